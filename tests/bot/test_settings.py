"""Settings: environment over config/clinic.yml over defaults; the token never printed."""

from __future__ import annotations

import pytest

from bot.settings import SettingsError, load_settings


def test_environment_wins_over_the_clinic_file(tmp_path):
    clinic = tmp_path / "clinic.yml"
    clinic.write_text("region: UK\nrasa_timeout: 3\n")
    settings = load_settings({"TRIAGE_REGION": "au", "TRIAGE_CLINICIANS": "11, 22"}, clinic)
    assert settings.region == "AU" and settings.rasa_timeout == 3.0
    assert settings.clinicians == frozenset({"11", "22"})


def test_unknown_clinic_key_is_refused(tmp_path):
    clinic = tmp_path / "clinic.yml"
    clinic.write_text("regoin: UK\n")
    with pytest.raises(SettingsError, match="unknown keys \\['regoin'\\]"):
        load_settings({}, clinic)


def test_token_is_never_in_the_repr():
    settings = load_settings({"TELEGRAM_BOT_TOKEN": "123:SECRET"}, None)
    assert "SECRET" not in repr(settings)


def test_the_rasa_token_is_a_setting_from_the_environment_only_and_never_printed(tmp_path):
    settings = load_settings({"TRIAGE_RASA_TOKEN": "rasa-secret"}, None)
    assert settings.rasa_token == "rasa-secret" and "rasa-secret" not in repr(settings)
    clinic = tmp_path / "clinic.yml"
    clinic.write_text("rasa_token: x\n")
    with pytest.raises(SettingsError):
        load_settings({}, clinic)


def test_starting_the_servers_writes_nothing_to_the_environment(monkeypatch):
    import os

    from bot.servers import RasaStack

    monkeypatch.delenv("TRIAGE_RASA_TOKEN", raising=False)
    stack = RasaStack(token="given")
    assert stack.token == "given" and "TRIAGE_RASA_TOKEN" not in os.environ
    assert RasaStack().token != "given"
