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
