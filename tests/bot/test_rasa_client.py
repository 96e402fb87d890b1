"""The "/" guard and the mapping of Rasa's REST replies."""

from __future__ import annotations

import pytest

from bot.rasa_client import neutralise, parse_reply


@pytest.mark.parametrize(
    "typed,forwarded",
    [
        ("/restart", "restart"),
        ("/deny", "deny"),
        ('/inform{"x": 1}', 'inform{"x": 1}'),
        ("  //greet", "greet"),
        ("\t/ / stop", "stop"),
        ("\u00a0/restart", "restart"),
        ("and/or is fine", "and/or is fine"),
        ("I feel 1/10", "I feel 1/10"),
    ],
)
def test_neutralise_removes_every_leading_slash(typed, forwarded):
    assert neutralise(typed) == forwarded
    assert not neutralise(typed).strip().startswith("/")


def test_parse_reply_keeps_text_buttons_and_custom_payloads():
    reply = parse_reply({"text": "Yes or no?", "buttons": [{"title": "Yes", "payload": "yes"}, {"x": 1}]})
    assert reply.text == "Yes or no?" and [b["title"] for b in reply.buttons] == ["Yes"]
    custom = parse_reply({"custom": {"escalate": {"priority": "urgent"}}})
    assert custom.text is None and custom.custom == {"escalate": {"priority": "urgent"}}
