"""The leased ticket lock stores, against the real Redis on loopback.

Each "process" below is a thread with its own event loop and its own store (its own
Redis connections), the way Sanic workers and pods share one Redis."""

import asyncio
import threading
import time

import pytest
import redis
from rasa.core.lock_store import LockError, LockStore
from rasa.utils.endpoints import EndpointConfig

from botfleet_rasa.lock_store import LeasedInMemoryLockStore, LeasedRedisLockStore

REDIS = redis.StrictRedis(host="127.0.0.1", port=6379, db=0)


def redis_store(prefix: str, poll_interval: float = 0.005) -> LeasedRedisLockStore:
    return LeasedRedisLockStore(host="127.0.0.1", port=6379, db=0, key_prefix=prefix, poll_interval=poll_interval)


def run_processes(count: int, body) -> list[BaseException]:
    """Runs `body(index)` as a coroutine in `count` threads, each with its own loop."""
    errors: list[BaseException] = []

    def thread(index: int) -> None:
        try:
            asyncio.run(body(index))
        except BaseException as error:  # reported to the test, not lost in the thread
            errors.append(error)

    threads = [threading.Thread(target=thread, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return errors


def long_turn_then_next(store, conversation: str, lifetime: float, hold: float, **lock_options) -> list[str]:
    """One turn holds the lock for `hold` seconds; another message of the same
    conversation arrives just after. Returns what happened, in order."""
    order: list[str] = []

    async def scenario() -> None:
        async def slow_turn() -> None:
            async with store.lock(conversation, lock_lifetime=lifetime, **lock_options):
                order.append("slow starts")
                await asyncio.sleep(hold)
                order.append("slow ends")

        async def next_turn() -> None:
            await asyncio.sleep(0.05)
            try:
                async with store.lock(conversation, lock_lifetime=lifetime, **lock_options):
                    order.append("next runs")
            except LockError:
                order.append("next fails")

        await asyncio.gather(slow_turn(), next_turn())

    asyncio.run(scenario())
    return order


def test_messages_of_one_conversation_never_overlap_across_processes(redis_prefix):
    """A read-modify-write under the lock, from 4 processes at once, loses no update."""
    counter = f"{redis_prefix}:counter"
    inside = {"now": 0, "most": 0}
    guard = threading.Lock()

    async def worker(index: int) -> None:
        store = redis_store(redis_prefix)
        for _ in range(15):
            async with store.lock("shared-conversation"):
                with guard:
                    inside["now"] += 1
                    inside["most"] = max(inside["most"], inside["now"])
                value = int(REDIS.get(counter) or 0)
                await asyncio.sleep(0.001)  # a turn's work, yielding to the loop
                REDIS.set(counter, value + 1)
                with guard:
                    inside["now"] -= 1

    assert run_processes(4, worker) == []
    assert int(REDIS.get(counter)) == 60
    assert inside["most"] == 1
    assert REDIS.get(f"{redis_prefix}:lock:shared-conversation") is None  # no lock left behind


def test_a_turn_longer_than_the_lock_lifetime_keeps_the_lock(redis_prefix):
    """Rasa's tickets expire `lifetime` after issue; a lease lives as long as its owner."""
    order = long_turn_then_next(redis_store(redis_prefix), "c1", lifetime=0.4, hold=1.2)  # three lifetimes
    assert order == ["slow starts", "slow ends", "next runs"]


def test_the_ticket_of_a_crashed_owner_expires_and_the_queue_moves_on(redis_prefix):
    store = redis_store(redis_prefix)
    store.issue_ticket("c2", 0.3)  # issued, never renewed nor returned: its owner died

    async def next_turn() -> float:
        started = time.monotonic()
        async with store.lock("c2", lock_lifetime=5):
            return time.monotonic() - started

    waited = asyncio.run(next_turn())
    assert 0.25 <= waited < 5


def test_the_lock_key_expires_with_its_last_ticket(redis_prefix):
    store = redis_store(redis_prefix)
    store.issue_ticket("c3", 2.0)
    ttl_ms = REDIS.pttl(f"{redis_prefix}:lock:c3")
    assert 1000 < ttl_ms <= 3000


def test_a_waiter_whose_ticket_vanished_gets_a_lock_error(redis_prefix):
    store = redis_store(redis_prefix)

    async def scenario() -> None:
        async def holder() -> None:
            async with store.lock("c4"):
                await asyncio.sleep(0.2)

        async def waiter() -> None:
            await asyncio.sleep(0.02)
            async with store.lock("c4"):
                pass

        async def flush() -> None:
            await asyncio.sleep(0.1)
            REDIS.delete(f"{redis_prefix}:lock:c4")  # e.g. Redis restarted without persistence

        await asyncio.gather(holder(), waiter(), flush())

    with pytest.raises(LockError, match="expired while waiting"):
        asyncio.run(scenario())


def test_endpoints_yml_creates_the_redis_store(redis_prefix):
    config = EndpointConfig(
        type="botfleet_rasa.lock_store.LeasedRedisLockStore",
        url="127.0.0.1", port="6379", db="0", password="", key_prefix=redis_prefix, poll_interval="0.01",
    )
    store = LockStore.create(config)
    assert isinstance(store, LeasedRedisLockStore)
    assert store.poll_interval == 0.01
    assert store.key_prefix == f"{redis_prefix}:lock:"
    assert store.issue_ticket("c5", 1) == 0


def test_in_memory_store_keeps_a_long_turn_locked_and_is_created_from_endpoints():
    store = LockStore.create(EndpointConfig(type="botfleet_rasa.lock_store.LeasedInMemoryLockStore"))
    assert isinstance(store, LeasedInMemoryLockStore)
    assert long_turn_then_next(store, "m1", lifetime=0.3, hold=0.9) == ["slow starts", "slow ends", "next runs"]
    assert store.get_lock("m1") is None


def test_rasa_own_redis_store_lets_the_next_turn_in_when_a_long_turn_outlives_its_ticket(redis_prefix):
    """Why botfleet ships its own store: the same scenario with Rasa's RedisLockStore
    runs two turns of one conversation at once (or fails the second). If a Rasa upgrade
    fixes this, this test says so."""
    from rasa.core.lock_store import RedisLockStore

    store = RedisLockStore(host="127.0.0.1", port=6379, db=0, key_prefix=redis_prefix)
    order = long_turn_then_next(store, "r1", lifetime=0.4, hold=1.2, wait_time_in_seconds=0.01)
    assert order != ["slow starts", "slow ends", "next runs"]
    assert order.index("slow ends") > 1  # the next turn ran or failed while the slow one held the lock


@pytest.mark.parametrize("bad", ["soon", "-1", "0", 0])
def test_a_bad_poll_interval_is_refused_naming_the_setting(bad):
    config = EndpointConfig(type="botfleet_rasa.lock_store.LeasedInMemoryLockStore", poll_interval=bad)
    with pytest.raises(ValueError, match="lock_store.poll_interval must be a positive number of seconds"):
        LockStore.create(config)
