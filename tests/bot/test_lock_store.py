"""The lock store Rasa's workers share: tickets of one conversation strictly in turn (real Redis)."""

from __future__ import annotations

import asyncio
import random
import threading
import time

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


def test_tickets_follow_rasas_own_lock_step_for_step(redis_server):
    """The Lua scripts against Rasa's in-memory lock store: the same tickets, the same queue."""
    from rasa.core.lock_store import InMemoryLockStore

    ours, rasas = stores(redis_server, 1)[0], InMemoryLockStore()
    rng = random.Random(12)
    held: list[int] = []
    for _ in range(300):
        if held and rng.random() < 0.5:
            ticket = held.pop(rng.randrange(len(held)))
            ours.cleanup("step", ticket)
            rasas.cleanup("step", ticket)
        else:
            ticket = ours.issue_ticket("step", 600)
            assert ticket == rasas.issue_ticket("step", 600)
            held.append(ticket)
        mine, theirs = ours.get_lock("step"), rasas.get_lock("step")
        assert (mine is None) == (theirs is None)
        if mine is not None:  # Rasa's TicketLock reads the value the scripts wrote
            assert [t.number for t in mine.tickets] == [t.number for t in theirs.tickets]
            assert mine.now_serving == theirs.now_serving
    for ticket in held:
        ours.cleanup("step", ticket)
    assert ours.get_lock("step") is None


def test_a_turn_whose_worker_died_holds_its_conversation_only_until_its_ticket_expires(redis_server):
    """A worker killed inside a turn never gives its ticket back; the next turn waits for the
    ticket's lifetime, then is served, and a turn after that is served at once."""
    dead, alive = stores(redis_server, 2)
    dead.issue_ticket("orphan", lock_lifetime=0.3)  # and never cleans up

    async def turn() -> float:
        start = time.monotonic()
        async with alive.lock("orphan", lock_lifetime=60, wait_time_in_seconds=0.05):
            pass
        return time.monotonic() - start

    assert asyncio.run(turn()) >= 0.25  # it waited for the dead worker's ticket to expire
    assert alive.get_lock("orphan") is None
    alive.issue_ticket("orphan", lock_lifetime=60)
    assert alive.get_lock("orphan").now_serving == 0  # numbering starts again when all expired
    alive.delete_lock("orphan")
