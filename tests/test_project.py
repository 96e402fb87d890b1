"""Project-level checks: Rasa data validates, the README documents every command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from bot.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def test_rasa_data_validates_cleanly():
    env = dict(os.environ, RASA_TELEMETRY_ENABLED="false")
    result = subprocess.run(
        [sys.executable, "-m", "rasa", "data", "validate", "--domain", "config/domain.yml",
         "--data", "data", "--config", "config/config.yml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    conflicts = [line for line in output.splitlines()
                 if re.search(r"conflict", line, re.I) and ("WARNING" in line or "ERROR" in line
                                                              or "CONFLICT" in line)]
    assert conflicts == []
    assert "No story structure conflicts found" in output
    # Rasa 3.6 calls a response "not used" when only a form or a custom action sends it, and an
    # intent "not used" when only the gateway triggers it; anything else unused is a mistake.
    domain = yaml.safe_load((ROOT / "config" / "domain.yml").read_text())
    form_questions = {f"utter_ask_{slot}" for slot in domain.get("slots", {})}
    action_source = "".join(p.read_text() for p in (ROOT / "actions").glob("*.py"))
    unused_responses = re.findall(r"The utterance '(\w+)' is not used", output)
    unused_intents = re.findall(r"The intent '(\w+)' is not used", output)
    stray = [r for r in unused_responses if r not in form_questions and f'"{r}"' not in action_source]
    assert stray == [], f"responses nothing sends: {stray}"
    assert [i for i in unused_intents if not i.startswith("EXTERNAL_")] == []


def test_readme_documents_every_cli_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in commands:
        assert re.search(rf"triage {name}\b", readme), f"README does not document `triage {name}`"


def test_readme_quickstart_is_setup_run_test():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Quickstart", 1)[1].split("```", 2)[1]
    assert [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")][-3:] == [
        "make setup", "make run", "make test"]


def test_ci_runs_the_readme_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make setup" in ci and "make test" in ci


def test_telemetry_is_off_for_every_entry_point():
    assert "RASA_TELEMETRY_ENABLED := false" in (ROOT / "Makefile").read_text()
    from bot.servers import child_env
    assert child_env()["RASA_TELEMETRY_ENABLED"] == "false"


def test_every_command_has_help():
    for name in build_parser()._subparsers._group_actions[0].choices:
        result = subprocess.run([sys.executable, "-m", "bot.cli", name, "--help"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "Example" in result.stdout
