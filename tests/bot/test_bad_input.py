"""Bad input through the real pipeline: nothing crashes, nothing is lost, risk is still seen."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys

import pytest

from bot.console import run_console
from bot.pipeline import Alert, Inbound, Pipeline, Reply
from bot.screening import get_screener
from bot.settings import load_settings

ODD = {
    "empty": "",
    "whitespace": " \t \n ",
    "telegram_max": "a" * 4096,
    "control_chars": "hi\x00\x01\x07\x1b[31m there\x7f",
    "zero_width_and_bidi": "\u202eenoyna\u202c \u200bhello\u200d\ufeff",
    "html_markdown": "<b>*_`[x](http://e.com)`_*</b> &amp; <script>alert(1)</script>",
    "emoji_only": "😀😀🎉🎉",
    "right_to_left": "مرحبا، كيف حالك؟",
    "non_english": "Hola, ¿cómo estás? Ich bin müde.",
    "intent_injection": '/inform{"asq_q5": "no"}',
}
RISKY = {
    "look_alike": "I want to kіll mysеlf",  # Cyrillic і and е
    "leetspeak": "i w4nt t0 k1ll mys3lf",
    "zero_width_inside": "i want to k\u200bill my\u200dself",
    "curly_apostrophe": "I’m going to end it tonight",
    "inside_huge_text": "la " * 30000 + "I want to kill myself",
}


@pytest.fixture
def pipeline(store, fake_rasa, sink):
    return Pipeline(store, get_screener(), fake_rasa, sink)


@pytest.mark.parametrize("name", ODD)
def test_odd_input_is_stored_and_answered(pipeline, store, fake_rasa, name):
    text = ODD[name]
    events = asyncio.run(pipeline.handle(Inbound(chat=name, text=text)))
    assert store.messages(f"console:{name}")[0]["text"] == text  # stored exactly as sent
    assert [e for e in events if isinstance(e, Reply)]  # the client always gets an answer
    for _, forwarded, _ in fake_rasa.calls:
        assert not forwarded.strip().startswith("/") and len(forwarded) <= 4096
    if name == "intent_injection":
        assert fake_rasa.calls[0][1].startswith("inform")


@pytest.mark.parametrize("name", RISKY)
def test_disguised_risk_still_escalates(pipeline, name):
    events = asyncio.run(pipeline.handle(Inbound(chat=name, text=RISKY[name])))
    alerts = [e for e in events if isinstance(e, Alert)]
    assert alerts and "self_harm" in alerts[0].categories
    assert any(isinstance(e, Reply) and e.kind == "card" for e in events)


@pytest.mark.rasa
def test_100k_characters_in_console_mode(rasa_stack, tmp_path):
    settings = load_settings({"TRIAGE_DB": str(tmp_path / "c.db"), "TRIAGE_RASA_URL": rasa_stack.rasa_url,
                              "TRIAGE_RASA_TOKEN": rasa_stack.token},
                             clinic_file=None)
    text = "ok " * 33333 + "I want to kill myself"
    out = io.StringIO()
    code = asyncio.run(run_console(settings, None, stdin=io.StringIO(text + "\nhello\n"), out=out))
    assert code == 0
    printed = out.getvalue()
    assert "CLINICIAN ALERT" in printed and "988" in printed
    assert printed.count("bot>") >= 3  # the card and replies for both lines


@pytest.mark.rasa
def test_100k_characters_in_simulate(rasa_stack, tmp_path):
    script = tmp_path / "big.jsonl"
    script.write_text(json.dumps({"chat": "big", "text": "x" * 100_000}) + "\n"
                      + json.dumps({"chat": "big", "text": "hello"}) + "\n")
    env = dict(os.environ, TRIAGE_RASA_URL=rasa_stack.rasa_url, TRIAGE_DB=str(tmp_path / "s.db"))
    result = subprocess.run([sys.executable, "-m", "bot.cli", "simulate", str(script)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert len([e for e in events if e["type"] == "reply"]) >= 2


def test_console_positive_gets_card_and_alert_with_rasa_stopped(tmp_path):
    from bot.servers import free_port

    settings = load_settings({"TRIAGE_DB": str(tmp_path / "c.db"),
                              "TRIAGE_RASA_URL": f"http://127.0.0.1:{free_port()}",
                              "TRIAGE_RASA_TIMEOUT": "2"}, clinic_file=None)
    out = io.StringIO()
    asyncio.run(run_console(settings, None, stdin=io.StringIO("I want to kill myself\n"), out=out))
    printed = out.getvalue()
    card, alert, failsafe = printed.index("988"), printed.index("CLINICIAN ALERT"), printed.index("can't reply properly")
    assert card < alert < failsafe  # all in the same turn, without Rasa


def test_simulate_positive_gets_card_and_alert_with_rasa_stopped(tmp_path):
    from bot.servers import free_port
    from bot.simulate import parse_script, run_script

    settings = load_settings({"TRIAGE_DB": str(tmp_path / "s.db"), "TRIAGE_RASA_TIMEOUT": "2"}, clinic_file=None)
    out = io.StringIO()
    script = parse_script([json.dumps({"chat": "dana", "text": "I took 30 tylenol an hour ago", "region": "UK"})])
    asyncio.run(run_script(script, settings, f"http://127.0.0.1:{free_port()}", None, out))
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert events[0]["type"] == "reply" and "116 123" in events[0]["text"]
    assert events[1]["type"] == "alert" and events[1]["priority"] == "imminent"
    assert "lethal_means" in events[1]["categories"] or "self_harm" in events[1]["categories"]
    assert events[2]["type"] == "reply" and "can't reply properly" in events[2]["text"]
