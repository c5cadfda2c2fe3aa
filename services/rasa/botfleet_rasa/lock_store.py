"""Ticket lock stores that keep one conversation's messages strictly in order.

Rasa serialises the messages of a conversation with a ticket lock. Its stores have two
gaps that lose tracker updates when several workers or pods share a conversation:

- A ticket expires `lock_lifetime` seconds (60) after it was *issued*, whether it is
  still waiting or already holding the lock. A queue of slow turns outlives the head's
  ticket, and the next message then runs beside it: both save, one update is lost.
- RedisLockStore changes the lock with a read and a separate write, so two pods that
  issue or return tickets at the same moment overwrite each other's tickets.

These stores make a ticket a lease: its owner renews it while it waits and while it
holds the lock, so only a crashed owner's ticket expires. LeasedRedisLockStore also
changes the lock in one optimistic Redis transaction (WATCH/MULTI), retried on conflict.

endpoints.yml:

    lock_store:
      type: botfleet_rasa.lock_store.LeasedRedisLockStore
      url: redis-host
      port: 6379
      key_prefix: botfleet
      poll_interval: 0.02   # seconds between checks while a message waits its turn
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, AsyncGenerator, Callable, Optional, Tuple, TypeVar

from rasa.core.lock import TicketLock
from rasa.core.lock_store import (
    LOCK_LIFETIME,
    InMemoryLockStore,
    LockError,
    LockStore,
    RedisLockStore,
)
from rasa.utils.endpoints import EndpointConfig

from botfleet_rasa import metrics

logger = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL = 0.02
# A lease is renewed this many times per lifetime, so one late renewal does not lose it.
RENEWALS_PER_LIFETIME = 4

Result = TypeVar("Result")


def renew_ticket(lock: TicketLock, ticket_number: int, lifetime: float) -> bool:
    """Pushes the ticket's expiry to `lifetime` from now; False if it is gone."""
    for ticket in lock.tickets:
        if ticket.number == ticket_number:
            ticket.expires = time.time() + lifetime
            return True
    return False


def poll_interval_setting(explicit: Any, options: dict[str, Any]) -> float:
    """The constructor argument, else endpoints.yml's `poll_interval` (removed from
    `options`, which go on to Rasa's store), else the default."""
    configured = options.pop("poll_interval", None)
    value = explicit if explicit is not None else configured
    if value is None:
        return DEFAULT_POLL_INTERVAL
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(f"lock_store.poll_interval must be a positive number of seconds, got {value!r}")
    return seconds


def holds_ticket(lock: Optional[TicketLock], ticket_number: int) -> bool:
    return lock is not None and any(t.number == ticket_number for t in lock.tickets)


class TicketLeaseMixin:
    """The lease protocol, shared by both stores. The store below supplies the ticket
    operations; each must be atomic for the processes that share the store."""

    poll_interval: float = DEFAULT_POLL_INTERVAL

    # Provided by the LockStore the mixin is combined with.
    issue_ticket: Callable[[str, float], int]
    get_lock: Callable[[str], Optional[TicketLock]]
    update_lock: Callable[[str], None]
    cleanup: Callable[[str, int], None]

    def renew(self, conversation_id: str, ticket_number: int, lifetime: float) -> bool:
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def lock(
        self,
        conversation_id: str,
        lock_lifetime: float = LOCK_LIFETIME,
        wait_time_in_seconds: Optional[float] = None,
    ) -> AsyncGenerator[TicketLock, None]:
        """Waits for this message's turn, holds the lock while the body runs, and keeps
        the ticket alive throughout."""
        wait = self.poll_interval if wait_time_in_seconds is None else wait_time_in_seconds
        ticket = self.issue_ticket(conversation_id, lock_lifetime)
        keep_alive = asyncio.create_task(self._keep_alive(conversation_id, ticket, lock_lifetime))
        try:
            started = time.perf_counter()
            lock = await self._acquire_lock(conversation_id, ticket, wait)
            metrics.LOCK_WAIT.observe(time.perf_counter() - started)
            yield lock
        finally:
            keep_alive.cancel()
            self.cleanup(conversation_id, ticket)

    async def _keep_alive(self, conversation_id: str, ticket: int, lifetime: float) -> None:
        while True:
            await asyncio.sleep(lifetime / RENEWALS_PER_LIFETIME)
            try:
                renewed = self.renew(conversation_id, ticket, lifetime)
            except Exception as error:  # the next renewal may succeed
                metrics.DEPENDENCY_ERRORS.labels("lock_store").inc()
                logger.warning("could not renew lock ticket %s of %s: %s", ticket, conversation_id, error)
                continue
            if not renewed:
                metrics.LOCK_TICKETS_LOST.inc()
                logger.warning(
                    "lock ticket %s of conversation %s expired before it was renewed "
                    "(was this process stalled for %.0f s?)", ticket, conversation_id, lifetime,
                )
                return

    async def _acquire_lock(self, conversation_id: str, ticket: int, wait_time_in_seconds: float) -> TicketLock:
        while True:
            lock = self.get_lock(conversation_id)
            if not holds_ticket(lock, ticket):
                metrics.LOCK_TICKETS_LOST.inc()
                raise LockError(
                    f"Lock ticket {ticket} of conversation '{conversation_id}' expired while waiting."
                )
            assert lock is not None
            if not lock.is_locked(ticket):
                return lock
            # Only a crashed owner's ticket expires; drop it so the queue moves on.
            if lock.tickets[0].has_expired():
                self.update_lock(conversation_id)
            await asyncio.sleep(wait_time_in_seconds)


class LeasedInMemoryLockStore(TicketLeaseMixin, InMemoryLockStore):
    """One process (the embedded default): the event loop makes each operation atomic."""

    def __init__(self, endpoint_config: Optional[EndpointConfig] = None, poll_interval: Any = None) -> None:
        super().__init__()
        options = dict(endpoint_config.kwargs) if endpoint_config else {}
        self.poll_interval = poll_interval_setting(poll_interval, options)

    def renew(self, conversation_id: str, ticket_number: int, lifetime: float) -> bool:
        lock = self.get_lock(conversation_id)
        return lock is not None and renew_ticket(lock, ticket_number, lifetime)


class LeasedRedisLockStore(TicketLeaseMixin, RedisLockStore):
    """Shared by every worker and pod of a bot. Each change to a lock is one Redis
    transaction, and the lock key expires with its last ticket."""

    def __init__(
        self,
        endpoint_config: Optional[EndpointConfig] = None,
        poll_interval: Any = None,
        **kwargs: Any,
    ) -> None:
        options: dict[str, Any] = {}
        if endpoint_config is not None:
            options.update(endpoint_config.kwargs)
            if endpoint_config.url:
                options["host"] = endpoint_config.url
        options.update(kwargs)
        interval = poll_interval_setting(poll_interval, options)
        if not options.get("password"):
            options.pop("password", None)  # an unset ${REDIS_PASSWORD} expands to ""
        super().__init__(**options)
        self.poll_interval = interval

    def _transact(
        self, conversation_id: str, change: Callable[[Optional[TicketLock]], Tuple[Optional[TicketLock], Result]]
    ) -> Result:
        """Reads the lock, applies `change` and writes the result back, atomically.
        `change` returns (the lock to store or None to leave it untouched, a result)."""
        import redis  # type: ignore[import-untyped]  # Rasa pins redis 4, which has no stubs

        key = self.key_prefix + conversation_id
        with self.red.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    current = TicketLock.from_dict(json.loads(raw)) if raw else None
                    changed, result = change(current)
                    if changed is None:
                        pipe.unwatch()
                        return result
                    pipe.multi()
                    if changed.tickets:
                        latest_expiry = max(t.expires for t in changed.tickets)
                        ttl_ms = max(1000, int((latest_expiry - time.time()) * 1000) + 1000)
                        pipe.set(key, changed.dumps(), px=ttl_ms)
                    else:
                        pipe.delete(key)
                    pipe.execute()
                    return result
                except redis.WatchError:
                    continue  # another process changed this lock in between: redo

    def issue_ticket(self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME) -> int:
        def issue(lock: Optional[TicketLock]) -> Tuple[Optional[TicketLock], int]:
            lock = lock or TicketLock(conversation_id)
            return lock, lock.issue_ticket(lock_lifetime)

        return self._transact(conversation_id, issue)

    def renew(self, conversation_id: str, ticket_number: int, lifetime: float) -> bool:
        def extend(lock: Optional[TicketLock]) -> Tuple[Optional[TicketLock], bool]:
            if lock is None or not renew_ticket(lock, ticket_number, lifetime):
                return None, False
            return lock, True

        return self._transact(conversation_id, extend)

    def update_lock(self, conversation_id: str) -> None:
        def drop_expired(lock: Optional[TicketLock]) -> Tuple[Optional[TicketLock], None]:
            if lock is None or not any(t.has_expired() for t in lock.tickets):
                return None, None
            lock.remove_expired_tickets()
            return lock, None

        self._transact(conversation_id, drop_expired)

    def finish_serving(self, conversation_id: str, ticket_number: int) -> None:
        def remove(lock: Optional[TicketLock]) -> Tuple[Optional[TicketLock], None]:
            if not holds_ticket(lock, ticket_number):
                return None, None
            assert lock is not None
            lock.remove_ticket_for(ticket_number)
            return lock, None

        self._transact(conversation_id, remove)

    def cleanup(self, conversation_id: str, ticket_number: int) -> None:
        # Removing the last ticket deletes the key in the same transaction, so there
        # is no separate "is anyone waiting?" check for another pod to race with.
        self.finish_serving(conversation_id, ticket_number)


__all__ = ["LeasedInMemoryLockStore", "LeasedRedisLockStore", "LockStore"]
