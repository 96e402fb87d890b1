"""Rasa's ``RedisLockStore`` with its read-modify-write steps made atomic.

Rasa 3.6 keeps one conversation's ticket queue as a JSON value in Redis and changes it by
GET, change in Python, SET (``rasa/core/lock_store.py``: ``issue_ticket``, ``update_lock``,
``finish_serving`` and ``cleanup``). With one worker that is safe: the calls are synchronous in
one event loop. With several workers two turns of one conversation arriving together can both
read the same queue and both take ticket N — and then run at once — or one worker's cleanup
can delete the lock another has just joined. This subclass makes each of those steps atomic,
so tickets are handed out strictly in turn across workers.

A turn takes a ticket and gives it back: each is one Lua script that Redis runs atomically
(``ISSUE``, ``CLEANUP``), and taking the ticket also answers whether it is the one being served,
so an uncontended turn makes two round trips to Redis. Rasa's own steps make seven (GET and
SET to issue, GET to check, GET, SET, GET and DEL to clean up), and as WATCH/MULTI/EXEC
transactions ours made seven too: py-spy put 12 % of a Rasa worker's time in them at 10
concurrent chats, and a worker's event loop waits for each (the client is synchronous). A
turn that must wait for another of its conversation polls as Rasa's does. The value stays
Rasa's JSON (``TicketLock.dumps``), so ``get_lock`` and Rasa's own tools read it as before.

Named in the endpoints file as ``type: bot.rasa_lock_store.AtomicRedisLockStore``; Rasa loads
a lock store by module path and runs several Sanic workers with any lock store that is not
in memory (``rasa.core.utils.number_of_sanic_workers``).
"""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncGenerator, Callable, Optional, Tuple, TypeVar

from rasa.core.lock import TicketLock
from rasa.core.lock_store import LOCK_LIFETIME, RedisLockStore
from rasa.utils.endpoints import EndpointConfig

T = TypeVar("T")
Change = Callable[[Optional[TicketLock]], Tuple[T, Optional[TicketLock], bool]]


# The lock's value is Rasa's: {"conversation_id": ..., "tickets": ["{\"number\": 0, \"expires\": ...}", ...]}
# (each ticket JSON inside the JSON). A ticket has expired when now > expires (``Ticket.has_expired``).
KEPT_TICKETS = """
local function kept(raw, now, drop)
  local tickets, last = {}, -1
  if raw then
    local lock = cjson.decode(raw)
    if type(lock['tickets']) == 'table' then
      for _, item in ipairs(lock['tickets']) do
        local ticket = cjson.decode(item)
        local number = tonumber(ticket['number'])
        if not (now > tonumber(ticket['expires'])) and number ~= drop then
          table.insert(tickets, item)
          last = number
        end
      end
    end
  end
  return tickets, last
end
"""

# KEYS[1] the lock; ARGV now, lifetime, conversation id -> {ticket issued, ticket now served}
ISSUE = KEPT_TICKETS + """
local now = tonumber(ARGV[1])
local tickets, last = kept(redis.call('GET', KEYS[1]), now, nil)
local number = last + 1
table.insert(tickets, cjson.encode({number = number, expires = now + tonumber(ARGV[2])}))
redis.call('SET', KEYS[1], cjson.encode({conversation_id = ARGV[3], tickets = tickets}))
return {number, tonumber(cjson.decode(tickets[1])['number'])}
"""

# KEYS[1] the lock; ARGV now, ticket -> tickets left; the lock is deleted when none is left
CLEANUP = KEPT_TICKETS + """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local tickets = kept(raw, tonumber(ARGV[1]), tonumber(ARGV[2]))
if #tickets == 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], cjson.encode({conversation_id = cjson.decode(raw)['conversation_id'], tickets = tickets}))
end
return #tickets
"""


class AtomicRedisLockStore(RedisLockStore):
    """``RedisLockStore`` whose ticket operations are atomic in Redis."""

    def __init__(self, endpoint_config: EndpointConfig) -> None:
        super().__init__(host=endpoint_config.url, **endpoint_config.kwargs)
        self._issue = self.red.register_script(ISSUE)  # EVALSHA, loading the script when Redis lacks it
        self._cleanup = self.red.register_script(CLEANUP)

    @asynccontextmanager
    async def lock(self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME,
                   wait_time_in_seconds: float = 1) -> AsyncGenerator[Any, None]:
        """Rasa's ``LockStore.lock``, taking the ticket and learning whether it is served at once."""
        ticket, serving = self._take_ticket(conversation_id, lock_lifetime)
        try:
            if ticket == serving:
                yield None  # Rasa's callers do not use the value
            else:
                yield await self._acquire_lock(conversation_id, ticket, wait_time_in_seconds)
        finally:
            self.cleanup(conversation_id, ticket)

    def _take_ticket(self, conversation_id: str, lock_lifetime: float) -> Tuple[int, int]:
        ticket, serving = self._issue(keys=[self.key_prefix + conversation_id],
                                      args=[repr(time.time()), repr(float(lock_lifetime)), conversation_id])
        return int(ticket), int(serving)

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
        return self._take_ticket(conversation_id, lock_lifetime)[0]

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
        """Remove this ticket (and expired ones); delete the lock if no other ticket is waiting."""
        self._cleanup(keys=[self.key_prefix + conversation_id], args=[repr(time.time()), int(ticket_number)])
