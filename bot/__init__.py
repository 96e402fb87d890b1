"""Crisis triage assistant: gateway, screening, escalation, storage and the `triage` CLI."""

from pathlib import Path

#: The project root (the checkout), where config/, data/ and models/ live.
PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "config"
