"""Crisis triage assistant: gateway, screening, escalation, storage and the `triage` CLI."""

from pathlib import Path

#: The project root (the checkout), where config/, data/ and models/ live.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "config"

# httpx logs every request URL at INFO: the Bot API URL carries the bot token and Rasa's API
# URLs carry its token, so those loggers never go below WARNING (ARCHITECTURE.md invariant 7).
import logging as _logging

for _name in ("httpx", "httpcore"):
    _logging.getLogger(_name).setLevel(_logging.WARNING)
