"""`triage simulate`: script validation, and the JSON Lines contract against real Rasa."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bot.simulate import ScriptError, parse_script


def test_script_errors_name_every_bad_line_and_nothing_runs():
    lines = ['{"chat": "a", "text": "hi"}', "not json", '{"chat": "", "text": 3}', '["x"]', '{"chat": "b", "text": "x", "mood": 1}']
    with pytest.raises(ScriptError) as err:
        parse_script(lines, source="s.jsonl")
    message = str(err.value)
    for number in (2, 3, 4, 5):
        assert f"s.jsonl:{number}:" in message
    assert "s.jsonl:1:" not in message


def test_blank_lines_are_skipped_and_regions_kept():
    (line,) = parse_script(["", '{"chat": 7, "text": "hi", "region": "UK"}'])
    assert (line.number, line.chat, line.text, line.region) == (2, "7", "hi", "UK")


def run_simulate(rasa_stack, tmp_path, lines: list[dict], model: str = "off") -> list[dict]:
    """Run `triage simulate`; the dialogue tests screen with the rules alone unless model="on"."""
    script = tmp_path / "script.jsonl"
    script.write_text("".join(json.dumps(line) + "\n" for line in lines))
    env = dict(os.environ, TRIAGE_RASA_URL=rasa_stack.rasa_url, TRIAGE_DB=str(tmp_path / "sim.db"),
               TRIAGE_SCREEN_MODEL=model)
    result = subprocess.run([sys.executable, "-m", "bot.cli", "simulate", str(script)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.rasa
def test_three_line_script_prints_reply_events_for_each_line(rasa_stack, tmp_path):
    events = run_simulate(rasa_stack, tmp_path, [
        {"chat": "alice", "text": "hello"},
        {"chat": "alice", "text": "are you a bot?"},
        {"chat": "bob", "text": "help", "region": "UK"},
    ])
    assert all(set(e) == {"type", "chat", "text", "buttons"} for e in events if e["type"] == "reply")
    assert [e["chat"] for e in events] == sorted([e["chat"] for e in events])  # in input order
    alice = [e["text"] for e in events if e["chat"] == "alice"]
    assert "not an emergency service" in alice[0]
    assert any("not a person" in t for t in alice)
    assert any("116 123" in e["text"] for e in events if e["chat"] == "bob")


@pytest.mark.rasa
def test_request_for_a_human_emits_an_alert_event(rasa_stack, tmp_path):
    events = run_simulate(rasa_stack, tmp_path, [
        {"chat": "carol", "text": "hi"},
        {"chat": "carol", "text": "can I speak to a real person please"},
    ])
    alerts = [e for e in events if e["type"] == "alert"]
    assert len(alerts) == 1
    assert set(alerts[0]) == {"type", "chat", "case", "priority", "categories", "text"}
    assert alerts[0]["priority"] == "routine" and isinstance(alerts[0]["case"], int)


def test_bad_script_exits_2_with_a_clear_message(tmp_path):
    script = tmp_path / "bad.jsonl"
    script.write_text('{"chat": "a"}\n')
    result = subprocess.run([sys.executable, "-m", "bot.cli", "simulate", str(script)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "bad.jsonl:1: 'text' must be a string" in result.stderr
    assert result.stdout == ""
