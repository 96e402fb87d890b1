"""Review: case lists, transcripts (md/html/json), annotations, label export, purge, audit."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys

import pytest

from bot import cases
from bot.pipeline import Inbound, Pipeline
from bot.review import (ReviewError, annotate, export_labels, list_cases, parse_age, purge,
                        render, transcript)
from bot.store import Store, migrations

CLIN = frozenset({"42"})


def chat(store, screener, rasa, sink, name: str, *texts: str) -> None:
    pipeline = Pipeline(store, screener, rasa, sink)
    for text in texts:
        asyncio.run(pipeline.handle(Inbound(chat=name, text=text)))


@pytest.fixture
def filled(store, fake_screener, fake_rasa, sink):
    chat(store, fake_screener, fake_rasa, sink, "alice", "hi", "I feel RISK <script>alert(1)</script>")
    chat(store, fake_screener, fake_rasa, sink, "bob", "ACUTE now")
    chat(store, fake_screener, fake_rasa, sink, "carol", "RISK")
    return store


def test_cases_are_listed_most_urgent_then_oldest_and_filtered(filled):
    rows = list_cases(filled)
    assert [(r["id"], r["priority"]) for r in rows] == [(2, "imminent"), (1, "urgent"), (3, "urgent")]
    assert [r["id"] for r in list_cases(filled, priority="urgent")] == [1, 3]
    assert [r["id"] for r in list_cases(filled, category="self_harm")] == [2, 1, 3]
    assert list_cases(filled, since="2999-01-01") == []
    with pytest.raises(ReviewError):
        list_cases(filled, status="closed")


def test_html_transcript_escapes_client_text_and_highlights_evidence(filled):
    page = render(transcript(filled, 1, "cli:tester"), "html")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<mark>RISK</mark>" in page
    assert "http" not in page.replace("http-equiv", "")  # self-contained: nothing fetched
    assert 'name="viewport"' in page


def test_markdown_and_json_transcripts_carry_messages_history_and_alerts(filled):
    md = render(transcript(filled, 1, "x"), "md")
    assert "«RISK»" in md and "opened by bot" in md and "delivered" in md
    record = json.loads(render(transcript(filled, 1, "x"), "json"))
    assert [m["direction"] for m in record["messages"]][:2] == ["in", "out"]
    assert record["messages"][2]["screening"]["highlight"]


def test_every_transcript_access_is_audited(filled):
    transcript(filled, 2, "cli:dr_lee")
    assert ("cli:dr_lee", "transcript", "case:2") in [
        (r["actor"], r["action"], r["target"]) for r in filled.audit_entries()]


def test_annotations_and_labels_export_in_eval_format(filled):
    messages = filled.messages("console:alice")
    first = messages[0]["id"]
    risky = [m["id"] for m in messages if m["direction"] == "in"][1]
    annotate(filled, 1, "dr", outcome="called back", missed=[f"{first}:self_harm"], confirmed=[f"{risky}:self_harm"])
    annotate(filled, 3, "dr", false_alarms=[str(filled.messages("console:carol")[0]["id"])])
    rows = export_labels(filled, "dr")
    assert {(r["text"], r["label"]) for r in rows} == {
        ("hi", "self_harm"), ("I feel RISK <script>alert(1)</script>", "self_harm"), ("RISK", "none")}
    with pytest.raises(ReviewError):
        annotate(filled, 1, "dr", missed=["99999:self_harm"])
    with pytest.raises(ReviewError):
        annotate(filled, 1, "dr", missed=[f"{first}:sadness"])


def test_case_history_replays_to_the_current_state(filled):
    cases.claim(filled, CLIN, 1, "42")
    cases.resolve(filled, CLIN, 1, "42", "seen in clinic")
    for case_id in (1, 2, 3):
        row = filled.case(case_id)
        state = cases.replay(filled.case_events(case_id))
        assert (state["status"], state["priority"], state["claimed_by"], state["resolved_by"], state["outcome"]) == (
            row["status"], row["priority"], row["claimed_by"], row["resolved_by"], row["outcome"])
        assert state["categories"] == json.loads(row["categories"])


def test_purge_deletes_old_resolved_cases_and_keeps_open_ones(filled):
    cases.resolve(filled, CLIN, 3, "42", "false alarm")
    long_ago = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=200)).isoformat()
    filled.db["cases"].update(3, {"resolved_at": long_ago})
    assert purge(filled, parse_age("90d"), "cli:admin", dry_run=True)["cases"] == 1
    assert filled.case(3) is not None
    counts = purge(filled, parse_age("90d"), "cli:admin")
    assert counts == {"cases": 1, "conversations": 1, "messages": 4}  # 1 in, card, reply, flow
    assert filled.case(3) is None and filled.messages("console:carol") == []
    assert filled.case(1) and filled.case(2) and filled.messages("console:alice")
    assert any(r["action"] == "purge" for r in filled.audit_entries())


def test_migrations_upgrade_an_older_database_in_place(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    from sqlite_utils import Database
    db = Database(conn)
    migrations.apply(db, stop_before="m002_telegram")  # a database from the first release
    db["conversations"].insert({"id": "console:x", "channel": "console", "region": "US", "created_at": "t"})
    db["messages"].insert({"conversation_id": "console:x", "direction": "in", "kind": "text", "text": "kept",
                           "created_at": "t"})
    conn.close()
    store = Store(path)
    assert [m.name for m in migrations.applied(store.db)] == ["m001_initial", "m002_telegram", "m003_review", "m004_tiers",
                                                             "m005_updates_by_conversation", "m006_card_answers",
                                                             "m007_web_console"]
    assert store.messages("console:x")[0]["text"] == "kept"
    assert "relay_message_id" in store.db["messages"].columns_dict and store.db["labels"].exists()


def test_in_memory_database_works(tmp_path):
    store = Store(":memory:")
    assert not store.store_inbound("c:1", "console", "hi").duplicate
    assert store.conversation("c:1") is not None


def triage(db, *args, stdin=None, clinicians="dr_cli"):
    env = dict(os.environ, TRIAGE_DB=str(db), TRIAGE_CLINICIANS=clinicians)
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_review_commands_from_the_cli(filled, tmp_path):
    db = filled.path
    listed = triage(db, "cases", "--json")
    assert listed.returncode == 0 and [c["id"] for c in json.loads(listed.stdout)] == [2, 1, 3]
    assert "#2 IMMINENT open" in triage(db, "cases").stdout
    page = triage(db, "transcript", "1", "--format", "html", "--actor", "dr_cli")
    assert page.returncode == 0 and "<mark>RISK</mark>" in page.stdout
    assert json.loads(triage(db, "transcript", "1", "--json").stdout)["case"]["id"] == 1
    missing = triage(db, "transcript", "99")
    assert missing.returncode == 2 and "no case #99" in missing.stderr
    first = filled.messages("console:alice")[0]["id"]
    assert triage(db, "annotate", "1", "--outcome", "ok", "--missed", f"{first}:self_harm").returncode == 0
    bad = triage(db, "annotate", "1", "--missed", "nonsense")
    assert bad.returncode == 2 and "MESSAGE_ID:CATEGORY" in bad.stderr
    out = tmp_path / "labels.jsonl"
    assert triage(db, "export-labels", "--output", str(out)).returncode == 0
    assert json.loads(out.read_text().splitlines()[0]) == {"text": "hi", "label": "self_harm"}
    assert "Would delete 0 resolved cases" in triage(db, "purge", "--older-than", "90d", "--dry-run").stdout
    assert triage(db, "purge", "--older-than", "soon").returncode == 2
    audit = json.loads(triage(db, "audit", "--json").stdout)
    assert ("dr_cli", "transcript", "case:1") in [(r["actor"], r["action"], r["target"]) for r in audit]


def test_a_review_command_refuses_anyone_not_allow_listed_with_the_one_refusal(filled):
    """bot.cases.authorise on the command line: TRIAGE_CLINICIANS plus this machine account."""
    from bot.cases import REFUSAL

    db = filled.path
    for command in (["transcript", "1"], ["cases"], ["annotate", "1", "--outcome", "x"],
                    ["export-labels"], ["purge", "--older-than", "90d", "--dry-run"], ["audit"]):
        refused = triage(db, *command, "--actor", "stranger")
        assert refused.returncode == 2, command
        assert REFUSAL in refused.stderr and not refused.stdout, command
    audit = filled.audit_entries()
    refusals = [(r["actor"], r["action"]) for r in audit if r["action"].startswith("refused:")]
    assert ("stranger", "refused:transcript") in refusals and len(refusals) == 6
    assert not any(r["actor"] == "stranger" and not r["action"].startswith("refused:") for r in audit)
    # an allow-listed clinician and the machine account itself are let in
    assert triage(db, "transcript", "1", "--actor", "dr_cli").returncode == 0
    assert triage(db, "cases", clinicians="").returncode == 0
    assert triage(db, "cases", "--actor", "dr_cli", clinicians="").returncode == 2


@pytest.mark.rasa
def test_after_a_risky_simulation_cases_transcript_and_audit_show_it(rasa_stack, tmp_path):
    db = tmp_path / "sim.db"
    script = tmp_path / "risky.jsonl"
    script.write_text("".join(json.dumps(line) + "\n" for line in [
        {"chat": "erin", "text": "hi"},
        {"chat": "erin", "text": "I've been saving my pills, I want to kill myself"},
    ]))
    env = dict(os.environ, TRIAGE_RASA_URL=rasa_stack.rasa_url, TRIAGE_DB=str(db))
    run = subprocess.run([sys.executable, "-m", "bot.cli", "simulate", str(script)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    (case,) = json.loads(triage(db, "cases", "--json").stdout)
    assert case["priority"] in ("urgent", "imminent") and "self_harm" in case["categories"]
    page = triage(db, "transcript", str(case["id"]), "--format", "html", "--actor", "dr_review",
                  clinicians="dr_review").stdout  # a listed clinician (the CLI refuses anyone else)
    assert "<mark>" in page and "hi" in page and "saving my pills" in page
    audit = triage(db, "audit", clinicians="dr_review").stdout
    assert "dr_review" in audit and f"case:{case['id']}" in audit
