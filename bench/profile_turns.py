"""Where a turn's time goes: CPU per turn in each process, and Rasa's share by stage.

    .venv/bin/python bench/profile_turns.py            # CPU per turn, action-server round trips
    .venv/bin/python bench/profile_turns.py --py-spy   # and Rasa's time by stage (pip install py-spy)

Starts Rasa and the action server as ``triage up`` does (dialogue state in SQLite), then sends
benign client messages through the pipeline (screen, store, Rasa client) in conversations of
1 turn (first turns only: the session starts), 10 and 40 turns, one turn at a time, and prints, then writes to bench/results/profile.txt:

- CPU milliseconds per turn of the Rasa process, of the action server, and of the gateway's
  side (screen, case store, Rasa client; Telegram's sending is not included), read from
  /proc and ``time.process_time``: figures that other load on the machine barely moves;
- action-server round trips per turn (custom actions in the trackers);
- with ``--py-spy``: a sampling profile of the Rasa process during the 40-turn conversations,
  grouped by stage (NLU, policies, tracker store, action server), as shares of a turn;
- the gateway benchmark's mix (40-turn conversations, 20 % risky messages, so crisis flows
  run): Rasa's CPU per call the gateway makes (a turn, a separate question for the active
  form, a crisis flow's trigger) and per benign and risky client message.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")

from bot.pipeline import Inbound, Pipeline  # noqa: E402
from bot.rasa_client import RasaClient  # noqa: E402
from bot.rasa_endpoints import TRACKER_FILE, DialogueStores, sqlite_url  # noqa: E402
from bot.screening import get_screener  # noqa: E402
from bot.servers import RasaStack  # noqa: E402
from bot.store import Store  # noqa: E402
from bench_gateway import BENIGN, RISKY  # noqa: E402  (the same client messages as the gateway bench)

TICK = os.sysconf("SC_CLK_TCK")
# Rasa's stages, by the frame that runs each (inclusive time; the rows may nest)
STAGES = [  # (label, frame, the frame it must run under, or None)
    ("a whole turn (Rasa's handle_message)", "handle_message (rasa/core/processor.py", None),
    ("NLU: the whole parse (graph runner, tokenizer, featurizers, DIET)", "parse_message (rasa/core/processor.py", None),
    ("  of which: DIETClassifier", "process (rasa/nlu/classifiers/diet_classifier.py", "parse_message (rasa/core/processor.py"),
    ("tracker store: read the events and rebuild the tracker", "fetch_tracker_and_update_session (rasa/core/processor.py", None),
    ("tracker store: save", "save_tracker (rasa/core/processor.py", None),
    ("policies: predict the next actions", "_predict_next_with_tracker (rasa/core/processor.py", None),
    ("  of which: the states of the whole history", "past_states (rasa/shared/core/trackers.py", "_predict_next_with_tracker (rasa/core/processor.py"),
    ("actions: run them (custom ones over HTTP)", "_run_action (rasa/core/processor.py", None),
    ("  of which: the round trip to the action server", "request (rasa/utils/endpoints.py", "_run_action (rasa/core/processor.py"),
    ("  of which: the whole tracker as JSON for it", "dumps (json/__init__.py", "_run_action (rasa/core/processor.py"),
    ("  of which: validating its answer", "_validate_action_result (rasa/core/actions/action.py", "_run_action (rasa/core/processor.py"),
]


class NullSink:
    """Replies and alerts go nowhere: this measures the pipeline, not Telegram."""

    queues_alerts = False

    async def reply(self, event) -> None: ...
    async def alert(self, event) -> None: ...
    async def review(self, event) -> None: ...
    async def relay(self, *args) -> None: ...


def process_tree(pid: int) -> list[int]:
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                pids += process_tree(int(entry))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / TICK


async def conversations(pipeline: Pipeline, count: int, turns: int, tag: str) -> list[str]:
    senders = []
    for c in range(count):
        chat = f"{tag}-{c}"
        senders.append(f"profile:{chat}")
        for _ in range(turns):
            await pipeline.handle(Inbound(chat=chat, text=random.choice(BENIGN), channel="profile"))
    return senders


def custom_actions(stack: RasaStack, senders: list[str], custom: set[str]) -> tuple[int, int]:
    """(custom actions run, user turns) in these conversations, from Rasa's trackers."""
    actions = turns = 0
    with httpx.Client(timeout=30, trust_env=False) as client:
        for sender in senders:
            events = client.get(f"{stack.rasa_url}/conversations/{sender}/tracker",
                                params={"include_events": "ALL", "token": stack.token}).json()["events"]
            turns += sum(1 for e in events if e["event"] == "user")
            actions += sum(1 for e in events if e["event"] == "action" and e.get("name") in custom)
    return actions, turns


def domain_custom_actions() -> set[str]:
    import yaml

    domain = yaml.safe_load((ROOT / "config" / "domain.yml").read_text())
    return {a for a in domain.get("actions", []) if not a.startswith("utter_")}


def spy_stages(raw: Path) -> list[str]:
    """Inclusive share of each stage in py-spy's raw (collapsed) output, per turn."""
    inclusive: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = {re.sub(r":\d+\)$", ")", re.sub(r" \(/.*?site-packages/", " (", f)) for f in stack.split(";")}
        for label, frame, parent in STAGES:
            if any(f.startswith(frame) for f in frames) and (
                    parent is None or any(f.startswith(parent) for f in frames)):
                inclusive[label] += int(count)
    whole = inclusive[STAGES[0][0]] or 1
    return [f"  {100 * inclusive[label] / whole:5.1f} %  {label}" for label, _, _ in STAGES]


async def bench_mix(pipeline: Pipeline, rasa: RasaClient, rasa_pids: list[int], chats: int = 20) -> list[str]:
    """Rasa's CPU per call and per client message in the gateway benchmark's mix (one at a time,
    so each call's CPU is its own; /proc counts in ticks, so only sums over many calls count)."""
    per_call: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()
    originals = {name: getattr(rasa, name) for name in ("turn", "active_loop", "trigger_intent")}

    def counted(name: str):
        async def call(*args, **kwargs):
            before = cpu_seconds(rasa_pids)
            try:
                return await originals[name](*args, **kwargs)
            finally:
                per_call[name] += cpu_seconds(rasa_pids) - before
                calls[name] += 1
        return call

    per_kind: collections.Counter[str] = collections.Counter()
    kinds: collections.Counter[str] = collections.Counter()
    for name in originals:
        setattr(rasa, name, counted(name))
    try:
        for c in range(chats):
            for _ in range(40):
                kind = "risky" if random.random() < 0.2 else "benign"
                before = cpu_seconds(rasa_pids)
                await pipeline.handle(Inbound(chat=f"mix-{c}", text=random.choice(RISKY if kind == "risky" else BENIGN),
                                              channel="profile"))
                per_kind[kind] += cpu_seconds(rasa_pids) - before
                kinds[kind] += 1
    finally:
        for name, original in originals.items():
            setattr(rasa, name, original)
    labels = {"turn": "a turn", "active_loop": "the active form asked separately", "trigger_intent": "a crisis flow's trigger"}
    return [
        f"the gateway benchmark's mix ({chats} conversations of 40 turns, 20 % risky, one message at a time):"
        f" Rasa's CPU per client message {1000 * sum(per_kind.values()) / max(1, sum(kinds.values())):.1f} ms"
        f" (benign {1000 * per_kind['benign'] / max(1, kinds['benign']):.1f}, risky"
        f" {1000 * per_kind['risky'] / max(1, kinds['risky']):.1f});"
        + "".join(f" {labels[name]} {1000 * per_call[name] / calls[name]:.1f} ms ({calls[name]} calls);"
                  for name in originals if calls[name]).rstrip(";")
    ]


async def measure(stack: RasaStack, store: Store, spy: bool, tmp: Path, raw_copy: str | None = None) -> list[str]:
    rasa = RasaClient(stack.rasa_url, timeout=60, token=stack.token)
    pipeline = Pipeline(store, get_screener(), rasa, NullSink())
    action_pids, rasa_pids = process_tree(stack.pids()[0]), process_tree(stack.pids()[1])
    custom = domain_custom_actions()
    lines = []
    try:
        await conversations(pipeline, 2, 3, "warm-up")
        # one-turn conversations: each turn is a first turn (the session starts, the disclosure)
        for turns, count in ((1, 40), (10, 20), (40, 5)):
            recorder = None
            if spy and turns == 40:
                out = tmp / "rasa-profile.txt"
                recorder = subprocess.Popen(
                    [shutil.which("py-spy") or "py-spy", "record", "--pid", str(rasa_pids[0]), "--format", "raw",
                     "--rate", "250", "--nonblocking", "-o", str(out)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1)
            r0, a0, g0, w0 = cpu_seconds(rasa_pids), cpu_seconds(action_pids), time.process_time(), time.monotonic()
            senders = await conversations(pipeline, count, turns, f"len{turns}")
            r1, a1, g1, w1 = cpu_seconds(rasa_pids), cpu_seconds(action_pids), time.process_time(), time.monotonic()
            n = count * turns
            actions, user_turns = custom_actions(stack, senders, custom)
            lines.append(
                f"conversations of {turns} turns ({n} turns, one at a time): CPU per turn: Rasa"
                f" {1000 * (r1 - r0) / n:.1f} ms, action server {1000 * (a1 - a0) / n:.1f} ms,"
                f" gateway side {1000 * (g1 - g0) / n:.1f} ms; {n / (w1 - w0):.1f} turns/s;"
                f" action-server round trips per turn {actions / max(1, user_turns):.2f}")
            if recorder is not None:
                recorder.send_signal(2)  # SIGINT: py-spy writes its file
                recorder.wait(timeout=60)
                lines.append("Rasa's time by stage in those 40-turn conversations (py-spy, share of a turn):")
                lines += spy_stages(out)
                if raw_copy:
                    shutil.copyfile(out, raw_copy)
        lines += await bench_mix(pipeline, rasa, rasa_pids)
        screener = get_screener()
        texts = [random.choice(BENIGN) for _ in range(200)]
        t0 = time.process_time()
        for text in texts:
            screener.screen(text)
        lines.append(f"the screen alone (rules and model), in the gateway: {1000 * (time.process_time() - t0) / 200:.1f} ms CPU per message")
    finally:
        await rasa.close()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--py-spy", action="store_true", help="also sample the Rasa process with py-spy")
    parser.add_argument("--raw", help="with --py-spy, also keep py-spy's raw (collapsed) stacks in this file")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "profile.txt"))
    args = parser.parse_args()
    if args.py_spy and not shutil.which("py-spy"):
        sys.exit("profile_turns.py: --py-spy needs py-spy (pip install py-spy)")
    random.seed(11)
    header = (f"profile_turns.py — {time.strftime('%Y-%m-%d %H:%M:%S %Z')} — {os.cpu_count()} cores,"
              f" Python {sys.version.split()[0]} — Rasa 1 worker, tracker store SQLite")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        stores = DialogueStores(tracker_url=sqlite_url(tmp / TRACKER_FILE))
        with RasaStack(stores=stores) as stack:
            store = Store(tmp / "triage.db")
            try:
                body = asyncio.run(measure(stack, store, args.py_spy, tmp, args.raw))
            finally:
                store.close()
    report = header + "\n" + "\n".join(body) + "\n"
    print(report, end="")
    Path(args.out).write_text(report)


if __name__ == "__main__":
    main()
