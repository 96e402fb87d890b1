"""config/flows.yml: clinic hours in the clinic's time zone; bad files name the file and key."""

from __future__ import annotations

import datetime as dt

import pytest

from bot.flows_config import FLOWS_FILE, FlowsConfigError, load_flows_config

UTC = dt.timezone.utc


def test_the_shipped_file_loads():
    config = load_flows_config()
    assert config.question_retries == 1


@pytest.mark.parametrize("when, open_", [
    (dt.datetime(2026, 11, 23, 15, 0, tzinfo=UTC), True),   # Monday 10:00 in New York
    (dt.datetime(2026, 11, 23, 23, 0, tzinfo=UTC), False),  # Monday 18:00 in New York
    (dt.datetime(2026, 11, 26, 23, 0, tzinfo=UTC), True),   # Thursday 18:00: open late
    (dt.datetime(2026, 11, 28, 15, 0, tzinfo=UTC), False),  # Saturday
])
def test_hours_are_read_in_the_clinic_time_zone(when, open_):
    assert load_flows_config().is_open(when) is open_


@pytest.mark.parametrize("text, named", [
    ("clinic_hours: {time_zone: UTC, open: {}, description: x}\nquestion_retries: 1\ncolour: red\n", "colour"),
    ("clinic_hours: {time_zone: Mars/Base, open: {}, description: x}\nquestion_retries: 1\n", "time_zone"),
    ("clinic_hours: {time_zone: UTC, open: {mon: 9-5}, description: x}\nquestion_retries: 1\n", "open.mon"),
    ("clinic_hours: {time_zone: UTC, open: {funday: '09:00-17:00'}, description: x}\nquestion_retries: 1\n", "funday"),
    ("clinic_hours: {time_zone: UTC, open: {}, description: x}\nquestion_retries: many\n", "question_retries"),
])
def test_bad_files_fail_naming_file_and_key(tmp_path, text, named):
    path = tmp_path / "flows.yml"
    path.write_text(text)
    with pytest.raises(FlowsConfigError) as err:
        load_flows_config(path)
    assert str(path) in str(err.value) and named in str(err.value)


def test_default_path_is_config_flows_yml():
    assert FLOWS_FILE.parts[-2:] == ("config", "flows.yml")
