"""The ``triage`` command: a thin layer over the library, one function per sub-command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Sequence

from bot.settings import Settings, SettingsError, load_settings
from bot.storage import StorageError

if TYPE_CHECKING:
    from bot.servers import RasaStack


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_up(args: argparse.Namespace) -> int:
    """Start the action server, the Rasa server and the gateway (console without a token).

    Example: ``triage up`` (or ``make run``).
    """
    from bot.servers import RasaStack, StackError, port_of

    settings = load_settings()
    if settings.telegram_token and not settings.staff_chat_id:
        sys.stderr.write("triage up: TRIAGE_STAFF_CHAT_ID is required with TELEGRAM_BOT_TOKEN\n")
        return 2
    if settings.telegram_token and not settings.clinicians:
        sys.stderr.write("triage up: TRIAGE_CLINICIANS is required with TELEGRAM_BOT_TOKEN\n")
        return 2
    from bot.screening import get_screener

    get_screener()  # fail fast on a bad screening config, before starting servers

    # SIGTERM during start-up unwinds like Ctrl-C, so the finally clause stops every child.
    signal.signal(signal.SIGTERM, _interrupt)
    stack = RasaStack(
        rasa_port=port_of(settings.rasa_url, 5005),
        action_port=port_of(settings.action_url, 5055),
    )
    sys.stderr.write("triage up: starting the action server and the Rasa server…\n")
    try:
        try:
            stack.start()
        except StackError as exc:
            sys.stderr.write(f"triage up: {exc}\n")
            return 1
        sys.stderr.write(f"triage up: Rasa at {stack.rasa_url}, actions at {stack.action_url}\n")
        return asyncio.run(_gateway_until_signal(settings, stack))
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()
        sys.stderr.write("triage up: stopped all servers\n")


async def _gateway_until_signal(settings: Settings, stack: RasaStack) -> int:
    """Run the Telegram gateway (token set) or console mode until a signal or a dead child."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if settings.telegram_token:
        from bot.telegram_gateway import run_telegram

        sys.stderr.write("triage up: Telegram gateway running; Ctrl-C to stop\n")
        code = await run_telegram(settings, stack.rasa_url, stop, stack.dead_child)
        if code:
            sys.stderr.write(f"triage up: {stack.dead_child()}\n")
        return code
    from bot.console import run_console

    return await run_console(settings, stack, stop=stop)


def cmd_screen(args: argparse.Namespace) -> int:
    """Screen stdin, one message (or JSON object with "text") a line; print JSON Lines.

    Example: ``echo "I am looking to purchase a new handgun." | triage screen``
    """
    from bot.screening import get_screener

    screener = get_screener()
    for raw in sys.stdin:
        line = raw.rstrip("\r\n")
        text = line
        if line.lstrip().startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                obj = None
            if isinstance(obj, dict) and isinstance(obj.get("text"), str):
                text = obj["text"]
        sys.stdout.write(json.dumps(screener.screen(text).to_dict(), ensure_ascii=False) + "\n")
        sys.stdout.flush()
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Screen a labelled JSON Lines file; print recall and precision per category.

    Example: ``triage eval tests/data/dev_set.jsonl --json``
    """
    from bot.evaluation import evaluate, format_report, load_labelled
    from bot.screening import get_screener

    try:
        rows = load_labelled(args.file)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"triage eval: {exc}\n")
        return 2
    report = evaluate(rows, get_screener())
    if args.json:
        sys.stdout.write(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    else:
        sys.stdout.write(format_report(report) + "\n")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run a JSON Lines script through the whole pipeline with real Rasa; print events.

    Example: ``triage simulate tests/data/simulate_basic.jsonl``
    """
    from bot.servers import StackError
    from bot.simulate import ScriptError, parse_script, simulate

    try:
        with open(args.file, encoding="utf-8") as handle:
            script = parse_script(handle, source=args.file)
    except OSError as exc:
        sys.stderr.write(f"triage simulate: cannot read {args.file}: {exc.strerror}\n")
        return 2
    except ScriptError as exc:
        sys.stderr.write(f"triage simulate: the script has errors; nothing was run:\n{exc}\n")
        return 2
    try:
        simulate(script, load_settings())
    except StackError as exc:
        sys.stderr.write(f"triage simulate: {exc}\n")
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="triage",
        description="Crisis triage assistant: screen, escalate, and run the clinic's chat.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO (never message text)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("up", help="start Rasa, the action server and the gateway",
                       description=cmd_up.__doc__)
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("screen", help="screen messages from stdin, JSON Lines out",
                       description=cmd_screen.__doc__)
    p.set_defaults(func=cmd_screen)

    p = sub.add_parser("eval", help="evaluate the screener on a labelled JSON Lines file",
                       description=cmd_eval.__doc__)
    p.add_argument("file", help="JSON Lines with 'text' and 'label'")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("simulate", help="run a JSON Lines chat script through the full pipeline",
                       description=cmd_simulate.__doc__)
    p.add_argument("file", help='JSON Lines: {"chat": "alice", "text": "hello", "region": "UK"}')
    p.set_defaults(func=cmd_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
    try:
        return int(args.func(args) or 0)
    except SettingsError as exc:
        sys.stderr.write(f"triage: {exc}\n")
        return 2
    except StorageError as exc:
        sys.stderr.write(f"triage: {exc}\n")
        return 1
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
