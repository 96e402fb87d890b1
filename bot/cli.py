"""The ``triage`` command: a thin layer over the library, one function per sub-command."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from bot.settings import Settings, SettingsError, load_settings
from bot.store import StorageError

if TYPE_CHECKING:
    from bot.servers import RasaStack


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def cmd_up(args: argparse.Namespace) -> int:
    """Start the action server, the Rasa server and the gateway (console without a token).

    Example: ``triage up`` (or ``make run``).
    """
    from bot.servers import RasaStack, StackError, port_of
    from bot.rasa_endpoints import DialogueStores

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
        token=settings.rasa_token,
        stores=DialogueStores.from_settings(settings),  # dialogue state outlives a restart
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
        from bot.telegram.gateway import run_telegram

        sys.stderr.write("triage up: Telegram gateway running; Ctrl-C to stop\n")
        code = await run_telegram(settings, stack.rasa_url, stack.token, stop, stack.dead_child)
        if code:
            sys.stderr.write(f"triage up: {stack.dead_child()}\n")
        return code
    from bot.console import run_console

    return await run_console(settings, stack, stop=stop)


def cmd_gateway(args: argparse.Namespace) -> int:
    """Run only the gateway, against Rasa already running at TRIAGE_RASA_URL.

    Example: ``TRIAGE_RASA_URL=http://127.0.0.1:5005 triage gateway`` (Telegram with a token,
    else console mode).
    """
    from bot.servers import rasa_is_up

    settings = load_settings()
    if not rasa_is_up(settings.rasa_url, settings.rasa_token):
        sys.stderr.write(f"triage gateway: no Rasa server answers at {settings.rasa_url}"
                         " (start it, or use `triage up`)\n")
        return 1

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if settings.telegram_token:
            from bot.telegram.gateway import run_telegram

            return await run_telegram(settings, settings.rasa_url, settings.rasa_token, stop)
        from bot.console import run_console

        return await run_console(settings, None, stop=stop)

    return asyncio.run(main())


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
    """Screen a labelled JSON Lines file (or a stance-labelled split); print recall, tiers, errors.

    Examples: ``triage eval tests/data/dev_set.jsonl --json``;
    ``triage eval --split test`` (the annotated test split, rebuilt from ../shared/corpus).
    """
    from bot.screening import get_screener
    from bot.screening.evaluation import evaluate, format_report, load_labelled, load_split

    if (args.file is None) == (args.split is None):
        sys.stderr.write("triage eval: give a FILE or --split (validation or test), not both\n")
        return 2
    try:
        if args.file is not None:
            rows = load_labelled(args.file)
        else:
            for name in ("corpus", "guard"):
                if not Path(getattr(args, name)).is_file():
                    sys.stderr.write(f"triage eval: --{name} {getattr(args, name)}: no such file\n")
                    return 2
            rows = load_split(args.split, Path(args.corpus), Path(args.labels), Path(args.guard),
                              Path(args.external))
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"triage eval: {exc}\n")
        return 2
    report = evaluate(rows, get_screener())
    if args.split is not None and not args.show_text:  # corpus rows stay out of terminals and logs
        for entry in report["misses"] + report["false_alarms"]:
            entry["text"] = f"<{len(entry['text'])} characters>"
    if args.json:
        sys.stdout.write(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    else:
        sys.stdout.write(format_report(report) + "\n")
    return 0


def cmd_train_screener(args: argparse.Namespace) -> int:
    """Rebuild the screen's model head from the corpus and the label files; write the model card.

    Example: ``triage train-screener --corpus ../shared/corpus/public.jsonl --out config/screening/model``
    """
    from bot.screening.data import LabelError
    from bot.screening.training import train

    for name in ("corpus", "guard", *(("finetuned",) if args.finetuned else ())):
        if not Path(getattr(args, name)).is_file():
            sys.stderr.write(f"triage train-screener: --{name} {getattr(args, name)}: no such file\n")
            return 2
    if not Path(args.labels).is_dir():
        sys.stderr.write(f"triage train-screener: --labels {args.labels}: no such folder\n")
        return 2
    try:
        train(Path(args.corpus), Path(args.labels), Path(args.out), Path(args.guard),
              external_path=Path(args.external) if args.external else None,
              clinic_path=Path(args.clinic) if args.clinic else None,
              finetuned=Path(args.finetuned) if args.finetuned else None,
              cache_path=None if args.no_cache else Path(args.cache),
              echo=lambda line: sys.stdout.write(line + "\n"))
    except LabelError as exc:
        sys.stderr.write(f"triage train-screener: {exc}\n")
        return 2
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


def _local_account() -> str:
    return f"cli:{getpass.getuser()}"


def _actor(args: argparse.Namespace) -> str:
    return args.actor or _local_account()


def _clinician_only(name: str, func):
    """Gate a review command with the one authorisation check (bot.cases.authorise).

    On the command line the allow-list is ``TRIAGE_CLINICIANS`` plus the machine account that
    runs the command (``cli:<user>``: it can read the owner-only database anyway); ``--actor``
    naming anyone else is refused with the one refusal text, and the refusal is audited.
    """

    def gated(args: argparse.Namespace) -> int:
        from bot.cases import NotAllowed, authorise

        allowed = load_settings().clinicians | {_local_account()}
        try:
            authorise(_store(), allowed, _actor(args), name, "cli", audit_allowed=False)
        except NotAllowed as exc:
            sys.stderr.write(f"triage {name}: {exc}\n")
            return 2
        return func(args)

    gated.__doc__ = func.__doc__
    return gated


def _store():
    from bot.store import Store

    return Store(load_settings().db_path)


def cmd_cases(args: argparse.Namespace) -> int:
    """List cases, most urgent and oldest first (default: open and claimed).

    Example: ``triage cases --status all --priority imminent --since 2026-11-01 --json``
    """
    from bot.review import ReviewError, case_summary, list_cases

    try:
        rows = list_cases(_store(), status=args.status, priority=args.priority,
                          category=args.category, since=args.since, until=args.until)
    except ReviewError as exc:
        sys.stderr.write(f"triage cases: {exc}\n")
        return 2
    if args.json:
        sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
    else:
        sys.stdout.write("".join(case_summary(r) + "\n" for r in rows) or "No cases.\n")
    return 0


def cmd_transcript(args: argparse.Namespace) -> int:
    """Print a case's whole conversation with the screening evidence marked (audited).

    Example: ``triage transcript 3 --format html > case-3.html``
    """
    from bot.review import render, transcript

    fmt = "json" if args.json else args.format
    try:
        record = transcript(_store(), args.case, _actor(args))
    except LookupError as exc:
        sys.stderr.write(f"triage transcript: {exc.args[0]}\n")
        return 2
    sys.stdout.write(render(record, fmt))
    return 0


def cmd_annotate(args: argparse.Namespace) -> int:
    """Record a clinician's judgement on a case, and label messages for the screener's eval.

    Example: ``triage annotate 3 --outcome "safety plan agreed" --missed 14:self_harm --false-alarm 9``
    """
    from bot.review import ReviewError, annotate

    try:
        case = annotate(_store(), args.case, _actor(args), outcome=args.outcome, note=args.note,
                        missed=args.missed, false_alarms=args.false_alarm, confirmed=args.confirm)
    except (ReviewError, LookupError) as exc:
        sys.stderr.write(f"triage annotate: {exc.args[0]}\n")
        return 2
    sys.stdout.write(json.dumps(case) + "\n" if args.json else f"Annotated case #{case['id']}.\n")
    return 0


def cmd_export_labels(args: argparse.Namespace) -> int:
    """Write clinician-labelled messages as JSON Lines for ``triage eval``.

    Example: ``triage export-labels --output reviewed.jsonl && triage eval reviewed.jsonl``
    """
    from bot.review import export_labels

    rows = export_labels(_store(), _actor(args))
    lines = "".join(json.dumps({"text": r["text"], "label": r["label"]}, ensure_ascii=False) + "\n" for r in rows)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(lines)
        sys.stderr.write(f"triage export-labels: wrote {len(rows)} labelled messages to {args.output}\n")
    else:
        sys.stdout.write(lines)
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    """Delete resolved cases (and their conversations) older than an age; open cases stay.

    Example: ``triage purge --older-than 90d --dry-run``
    """
    from bot.review import ReviewError, parse_age, purge

    try:
        counts = purge(_store(), parse_age(args.older_than), _actor(args), dry_run=args.dry_run)
    except ReviewError as exc:
        sys.stderr.write(f"triage purge: {exc}\n")
        return 2
    if args.json:
        sys.stdout.write(json.dumps(counts) + "\n")
    else:
        verb = "Would delete" if args.dry_run else "Deleted"
        sys.stdout.write(f"{verb} {counts['cases']} resolved cases, {counts['conversations']} conversations,"
                         f" {counts['messages']} messages.\n")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """Show the audit log: who accessed or changed what, and when.

    Example: ``triage audit --since 2026-11-01 --json``
    """
    from bot.review import ReviewError, audit_entries

    try:
        rows = audit_entries(_store(), actor=args.who, since=args.since)
    except ReviewError as exc:
        sys.stderr.write(f"triage audit: {exc}\n")
        return 2
    if args.json:
        sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
    else:
        for r in rows:
            sys.stdout.write(f"{r['created_at'][:19]}  {r['actor']:<20} {r['action']:<22} {r['target']}\n")
    return 0


def cmd_web(args: argparse.Namespace) -> int:
    """Serve the clinicians' web console on 127.0.0.1:$TRIAGE_WEB_PORT (default 8765).

    Put it behind a reverse proxy with TLS and set TRIAGE_WEB_URL to the public address
    (README: "The clinicians' console"). Example: ``TRIAGE_WEB_PORT=8765 triage web``
    """
    from bot.web.serve import run_web

    settings = load_settings()

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await run_web(settings, stop)

    return asyncio.run(main())


def cmd_web_login(args: argparse.Namespace) -> int:
    """Print a one-time login link to the web console for a clinician of TRIAGE_CLINICIANS.

    The link works once and for 10 minutes; anyone not on the list is refused (exit 2).
    Example: ``triage web-login --clinician 424242``
    """
    from bot.cases import NotAllowed
    from bot.web.auth import TooManyLinks, issue_link

    try:
        link = issue_link(_store(), load_settings(), args.clinician)
    except NotAllowed as exc:
        sys.stderr.write(f"triage web-login: {exc}\n")
        return 2
    except TooManyLinks as exc:
        sys.stderr.write(f"triage web-login: {exc}\n")
        return 3
    sys.stdout.write(link + "\n")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    """Copy the case store (and Rasa's tracker store on SQLite) into DEST, safely while the gateway writes.

    Uses SQLite's online backup: each copy holds every message acknowledged before it began.
    DEST is a folder only you can read (created 0700); the copies are 0600.
    Example: ``triage backup /srv/backups/triage-$(date +%F)``
    """
    from bot.backup import BackupError, backup

    settings = load_settings()
    try:
        done = backup(settings, Path(args.dest))
    except (BackupError, OSError) as exc:
        sys.stderr.write(f"triage backup: {exc}\n")
        return 1
    if settings.tracker_url and not settings.tracker_url.startswith("sqlite"):
        sys.stderr.write("triage backup: the tracker store is not on SQLite; back it up with its own"
                         " tools (for PostgreSQL, pg_dump)\n")
    if args.json:
        sys.stdout.write(json.dumps([d.to_json() for d in done]) + "\n")
    else:
        for d in done:
            sys.stdout.write(f"{d.source} → {d.copy} ({d.bytes} bytes)\n")
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

    p = sub.add_parser("gateway", help="run only the gateway against a running Rasa",
                       description=cmd_gateway.__doc__)
    p.set_defaults(func=cmd_gateway)

    p = sub.add_parser("screen", help="screen messages from stdin, JSON Lines out",
                       description=cmd_screen.__doc__)
    p.set_defaults(func=cmd_screen)

    p = sub.add_parser("eval", help="evaluate the screener on a labelled JSON Lines file",
                       description=cmd_eval.__doc__)
    p.add_argument("file", nargs="?", help="JSON Lines with 'text' and 'label'")
    p.add_argument("--split", choices=("validation", "test"), help="evaluate a stance-labelled split instead")
    p.add_argument("--corpus", default="../shared/corpus/public.jsonl", help="with --split: the corpus")
    p.add_argument("--labels", default="data/screening/labels", help="with --split: the label files")
    p.add_argument("--external", default="var/external.jsonl", help="with --split: rebuilt external texts")
    p.add_argument("--guard", default="../shared/corpus/heldout-shingles.txt", help="with --split: held-out shingles")
    p.add_argument("--show-text", action="store_true", help="with --split: print the texts of errors")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("train-screener", help="rebuild the screen's model from the corpus and labels",
                       description=cmd_train_screener.__doc__)
    p.add_argument("--corpus", default="../shared/corpus/public.jsonl", help="the public corpus (JSON Lines)")
    p.add_argument("--labels", default="data/screening/labels", help="folder of stance label files")
    p.add_argument("--external", default="var/external.jsonl",
                   help="texts of the external rows (scripts/rebuild_external.py); skipped when absent")
    p.add_argument("--guard", default="../shared/corpus/heldout-shingles.txt", help="held-out shingles")
    p.add_argument("--clinic", help="the clinic's own labelled messages (stance labels or export-labels lines)")
    p.add_argument("--finetuned", help="use this fine-tuned classifier.onnx (scripts/finetune_minilm.py) "
                   "instead of fitting heads on the frozen encoder")
    p.add_argument("--out", default="config/screening/model", help="where head.json and the card go")
    p.add_argument("--cache", default="var/screener-embeddings.npz", help="embedding cache (owner-only)")
    p.add_argument("--no-cache", action="store_true", help="embed every row again")
    p.set_defaults(func=cmd_train_screener)

    p = sub.add_parser("backup", help="copy the databases safely while the gateway runs",
                       description=cmd_backup.__doc__)
    p.add_argument("dest", help="folder for the copies (created owner-only)")
    p.add_argument("--json", action="store_true", help="list the copies as JSON")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("simulate", help="run a JSON Lines chat script through the full pipeline",
                       description=cmd_simulate.__doc__)
    p.add_argument("file", help='JSON Lines: {"chat": "alice", "text": "hello", "region": "UK"}')
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("web", help="serve the clinicians' web console", description=cmd_web.__doc__)
    p.set_defaults(func=cmd_web)

    p = sub.add_parser("web-login", help="print a one-time console login link for a clinician",
                       description=cmd_web_login.__doc__)
    p.add_argument("--clinician", required=True, help="the clinician's Telegram user id (in TRIAGE_CLINICIANS)")
    p.set_defaults(func=cmd_web_login)

    def review(name: str, func, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=func.__doc__)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("--actor", help="who is asking: a clinician of TRIAGE_CLINICIANS, or this machine "
                                       "account (the default, cli:<user>); anyone else is refused")
        p.set_defaults(func=_clinician_only(name, func))
        return p

    p = review("cases", cmd_cases, "list cases, most urgent and oldest first")
    p.add_argument("--status", help="open, claimed, resolved or all (default: open and claimed)")
    p.add_argument("--priority", help="routine, urgent or imminent")
    p.add_argument("--category", help="a screening category, e.g. self_harm")
    p.add_argument("--since", help="opened on or after YYYY-MM-DD")
    p.add_argument("--until", help="opened on or before YYYY-MM-DD")

    p = review("transcript", cmd_transcript, "a case's conversation with the evidence marked")
    p.add_argument("case", type=int)
    p.add_argument("--format", choices=["md", "html", "json"], default="md")

    p = review("annotate", cmd_annotate, "record a clinician's judgement and message labels")
    p.add_argument("case", type=int)
    p.add_argument("--outcome", help="what happened")
    p.add_argument("--note", help="free text for the record")
    p.add_argument("--missed", action="append", default=[], metavar="MSG:CATEGORY",
                   help="the screen missed this risk in message MSG")
    p.add_argument("--false-alarm", action="append", default=[], metavar="MSG",
                   help="the screen flagged message MSG but there was no risk")
    p.add_argument("--confirm", action="append", default=[], metavar="MSG:CATEGORY",
                   help="the screen was right about message MSG")

    p = review("export-labels", cmd_export_labels, "labelled messages as JSON Lines for triage eval")
    p.add_argument("--output", help="file to write (default: stdout)")

    p = review("purge", cmd_purge, "delete resolved cases older than an age")
    p.add_argument("--older-than", required=True, help="e.g. 90d or 12w")
    p.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    p = review("audit", cmd_audit, "who accessed or changed what")
    p.add_argument("--who", help="only this actor")
    p.add_argument("--since", help="on or after YYYY-MM-DD")
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
