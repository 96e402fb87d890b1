"""Rasa's ``RedisLockStore`` with its read-modify-write steps made atomic.

Rasa 3.6 keeps one conversation's ticket queue as a JSON value in Redis and changes it by
GET, change in Python, SET (``rasa/core/lock_store.py``: ``issue_ticket``, ``update_lock``,
``finish_serving`` and ``cleanup``). With one worker that is safe: the calls are synchronous in
one event loop. With several workers two turns of one conversation arriving together can both
read the same queue and both take ticket N — and then run at once — or one worker's cleanup
can delete the lock another has just joined. This subclass runs each of those steps as one
Redis transaction (WATCH/MULTI/EXEC, retried when the key changed underneath), so tickets
are handed out strictly in turn across workers. Everything else is Rasa's class as it is.

Named in the endpoints file as ``type: bot.rasa_lock_store.AtomicRedisLockStore``; Rasa loads
a lock store by module path and runs several Sanic workers with any lock store that is not
in memory (``rasa.core.utils.number_of_sanic_workers``).
"""

from __future__ import annotations

import json
from typing import Callable, Optional, Tuple, TypeVar

from rasa.core.lock import TicketLock
from rasa.core.lock_store import LOCK_LIFETIME, RedisLockStore
from rasa.utils.endpoints import EndpointConfig

T = TypeVar("T")
Change = Callable[[Optional[TicketLock]], Tuple[T, Optional[TicketLock], bool]]


class AtomicRedisLockStore(RedisLockStore):
    """``RedisLockStore`` whose ticket operations are Redis transactions."""

    def __init__(self, endpoint_config: EndpointConfig) -> None:
        super().__init__(host=endpoint_config.url, **endpoint_config.kwargs)

    def _atomically(self, conversation_id: str, change: Change) -> T:
        """Read the lock, apply ``change`` and write the result, as one transaction.

        ``change(lock)`` returns (result, new lock or None, write?) — None with write → delete.
        """
        import redis

        key = self.key_prefix + conversation_id
        with self.red.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    lock = TicketLock.from_dict(json.loads(raw)) if raw else None
                    result, new, write = change(lock)
                    pipe.multi()
                    if write and new is None:
                        pipe.delete(key)
                    elif write:
                        pipe.set(key, new.dumps())
                    pipe.execute()
                    return result
                except redis.WatchError:
                    continue  # someone changed the lock between our read and write: again

    def issue_ticket(self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME) -> int:
        def change(lock: Optional[TicketLock]):
            lock = lock or self.create_lock(conversation_id)
            ticket = lock.issue_ticket(lock_lifetime)
            return ticket, lock, True

        return self._atomically(conversation_id, change)

    def update_lock(self, conversation_id: str) -> None:
        def change(lock: Optional[TicketLock]):
            if lock is None:
                return None, None, False
            lock.remove_expired_tickets()
            return None, lock, True

        self._atomically(conversation_id, change)

    def finish_serving(self, conversation_id: str, ticket_number: int) -> None:
        self.cleanup(conversation_id, ticket_number)

    def cleanup(self, conversation_id: str, ticket_number: int) -> None:
        """Remove this ticket; delete the lock only if no other ticket is waiting — atomically."""

        def change(lock: Optional[TicketLock]):
            if lock is None:
                return None, None, False
            lock.remove_ticket_for(ticket_number)
            return None, (lock if lock.is_someone_waiting() else None), True

        self._atomically(conversation_id, change)
