"""deploy/ (docs/DEPLOY.md): the systemd units run commands that exist, with settings that exist."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from bot.cli import build_parser
from bot.settings import ENV_VARS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNITS = sorted(DEPLOY.glob("*.service"))


def _subcommands() -> set[str]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return set(sub.choices)


def test_there_are_units_to_install():
    assert {u.name for u in UNITS} >= {"triage.service", "triage-backup.service"}
    assert (DEPLOY / "triage-backup.timer").exists()


@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_each_unit_runs_a_triage_command_that_exists_and_keeps_client_text_private(unit):
    text = unit.read_text(encoding="utf-8")
    commands = re.findall(r"/opt/triage/\.venv/bin/triage (\S+)", text)
    assert commands, unit
    assert set(commands) <= _subcommands(), commands
    assert "UMask=0077" in text  # files it creates are owner-only
    assert "EnvironmentFile=/etc/triage/triage.env" in text


def test_the_environment_example_names_only_real_settings():
    names = []
    for line in (DEPLOY / "triage.env.example").read_text(encoding="utf-8").splitlines():
        line = line.lstrip("#").strip()
        if re.match(r"^[A-Z_]+=", line):
            names.append(line.split("=", 1)[0])
    assert names and set(names) <= set(ENV_VARS), set(names) - set(ENV_VARS)


def test_the_backup_command_line_parses():
    (line,) = [l for l in (DEPLOY / "triage-backup.service").read_text().splitlines() if l.startswith("ExecStart=")]
    inner = shlex.split(line.split("=", 1)[1])[-1]  # the sh -c script
    argv = shlex.split(inner.replace("$(date -u +%%Y%%m%%dT%%H%%M%%SZ)", "20261130T000000Z"))
    assert argv[:3] == ["exec", "/opt/triage/.venv/bin/triage", "backup"]
    args = build_parser().parse_args(argv[2:])
    assert args.func is not None
