"""The lock store Rasa's workers share: tickets of one conversation strictly in turn (real Redis)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from dialogue_servers import RedisServer

from bot.rasa_lock_store import AtomicRedisLockStore
from rasa.utils.endpoints import EndpointConfig


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer().start()
    yield server
    server.close()


def stores(redis_server, n: int) -> list[AtomicRedisLockStore]:
    config = EndpointConfig(url="127.0.0.1", port=redis_server.port, db=1,
                            type="bot.rasa_lock_store.AtomicRedisLockStore")
    return [AtomicRedisLockStore(config) for _ in range(n)]


def test_tickets_issued_at_once_by_many_workers_are_all_distinct(redis_server):
    """Eight stores (as eight workers) issue 50 tickets each for one conversation, all at once."""
    workers = stores(redis_server, 8)
    issued: list[list[int]] = [[] for _ in workers]
    start = threading.Barrier(len(workers))

    def work(i: int) -> None:
        start.wait()
        for _ in range(50):
            issued[i].append(workers[i].issue_ticket("race", 600))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = sorted(n for batch in issued for n in batch)
    assert every == list(range(400))  # none issued twice, none lost
    lock = workers[0].get_lock("race")
    assert len(lock.tickets) == 400
    workers[0].delete_lock("race")


def test_turns_of_one_conversation_never_overlap_across_workers(redis_server):
    """Rasa's own lock() on top: 4 workers × 10 turns of one conversation, at most one inside."""
    workers = stores(redis_server, 4)
    inside = 0
    most = 0
    guard = threading.Lock()

    def worker(store: AtomicRedisLockStore) -> None:
        async def turns():
            nonlocal inside, most
            for _ in range(10):
                async with store.lock("one-chat", lock_lifetime=60, wait_time_in_seconds=0.01):
                    with guard:
                        inside += 1
                        most = max(most, inside)
                    await asyncio.sleep(0.005)
                    with guard:
                        inside -= 1

        asyncio.run(turns())

    threads = [threading.Thread(target=worker, args=(s,)) for s in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert most == 1
    assert workers[0].get_lock("one-chat") is None  # the last one out cleaned up
