"""The windowed stores against real Redis and PostgreSQL."""

import asyncio
import json

import redis
import sqlalchemy as sa
from rasa.shared.core.events import ActionExecuted, BotUttered, SlotSet, UserUttered

from botfleet_common import archive
from botfleet_rasa import metrics
from botfleet_rasa.tracker_store import WindowedInMemoryTrackerStore, WindowedRedisTrackerStore

CARD = "4111 1111 1111 1111"


def redis_store(domain, prefix, archive_url, turns=2):
    return WindowedRedisTrackerStore(domain, url="127.0.0.1", port="6379", db="0", key_prefix=prefix, window_turns=str(turns), archive_url=archive_url)


def add_turn(tracker, n, text=None):
    tracker.update(UserUttered(text or f"message {n}", {"name": "greet", "confidence": 1.0}, input_channel="rest"))
    tracker.update(BotUttered(f"reply {n}"))
    tracker.update(ActionExecuted("action_listen"))


def test_redis_store_never_holds_pii(domain, redis_prefix, pg_url):
    store = redis_store(domain, redis_prefix, pg_url, turns=10)
    tracker = asyncio.run(store.get_or_create_tracker("pii-user"))
    add_turn(tracker, 1, f"my card is {CARD}")
    asyncio.run(store.save(tracker))
    raw = redis.StrictRedis(host="127.0.0.1", port=6379).get(f"{redis_prefix}:tracker:pii-user").decode()
    assert "4111" not in raw and "[CARD]" in raw


def test_redis_window_archives_to_postgres(domain, redis_prefix, pg_url):
    store = redis_store(domain, redis_prefix, pg_url, turns=2)
    for n in range(1, 6):
        tracker = asyncio.run(store.retrieve("windowed")) or asyncio.run(store.get_or_create_tracker("windowed"))
        if n == 1:
            tracker.update(SlotSet("destination", "Berlin"))
        add_turn(tracker, n)
        asyncio.run(store.save(tracker))
    active = asyncio.run(store.retrieve("windowed"))
    assert [e.text for e in active.events if isinstance(e, UserUttered)] == ["message 4", "message 5"]
    assert active.get_slot("destination") == "Berlin"
    archived = archive.conversation_history(sa.create_engine(pg_url), "windowed")
    assert [e["text"] for e in archived if e["event"] == "user"] == ["message 1", "message 2", "message 3"]


def test_archive_outage_keeps_the_whole_tracker(domain, redis_prefix, dead_database_url):
    errors = metrics.DEPENDENCY_ERRORS.labels("archive_db")
    before = errors._value.get()
    store = redis_store(domain, redis_prefix, dead_database_url, turns=1)
    tracker = asyncio.run(store.get_or_create_tracker("outage"))
    for n in range(1, 4):
        add_turn(tracker, n)
        asyncio.run(store.save(tracker))
    active = asyncio.run(store.retrieve("outage"))
    assert len([e for e in active.events if isinstance(e, UserUttered)]) == 3
    assert errors._value.get() > before


def test_in_memory_store_windows_into_sqlite(domain, tmp_path):
    url = f"sqlite:///{tmp_path / 'archive.sqlite3'}"
    store = WindowedInMemoryTrackerStore(domain, window_turns=1, archive_url=url)
    tracker = asyncio.run(store.get_or_create_tracker("embedded"))
    for n in range(1, 4):
        add_turn(tracker, n, f"mail me at user{n}@example.com")
        asyncio.run(store.save(tracker))
        tracker = asyncio.run(store.retrieve("embedded"))
    assert [e.text for e in tracker.events if isinstance(e, UserUttered)] == ["mail me at [EMAIL]"]
    archived = archive.conversation_history(sa.create_engine(url), "embedded")
    assert len([e for e in archived if e["event"] == "user"]) == 2
    assert "example.com" not in json.dumps(archived)


def test_messages_are_counted_by_channel(domain, redis_prefix, pg_url):
    incoming = metrics.MESSAGES.labels("rest", "in")
    before = incoming._value.get()
    store = redis_store(domain, redis_prefix, pg_url)
    tracker = asyncio.run(store.get_or_create_tracker("counted"))
    add_turn(tracker, 1)
    asyncio.run(store.save(tracker))
    assert incoming._value.get() == before + 1


def test_messages_are_counted_once_in_a_later_session(domain, redis_prefix, pg_url):
    from rasa.shared.core.events import SessionStarted

    incoming = metrics.MESSAGES.labels("rest", "in")
    store = redis_store(domain, redis_prefix, pg_url, turns=10)
    tracker = asyncio.run(store.get_or_create_tracker("two-sessions"))
    add_turn(tracker, 1)
    tracker.update(ActionExecuted("action_session_start"))
    tracker.update(SessionStarted())
    tracker.update(ActionExecuted("action_listen"))
    asyncio.run(store.save(tracker))
    for n in (2, 3):
        # Rasa hands save() the last session only, as retrieve() returns it.
        current = asyncio.run(store.retrieve("two-sessions"))
        before = incoming._value.get()
        add_turn(current, n)
        asyncio.run(store.save(current))
        assert incoming._value.get() == before + 1
    full = asyncio.run(store.retrieve_full_tracker("two-sessions"))
    assert [e.text for e in full.events if isinstance(e, UserUttered)] == ["message 1", "message 2", "message 3"]


def test_a_handoff_is_counted_once_when_its_slot_turns_true(domain, redis_prefix, pg_url):
    store = redis_store(domain, redis_prefix, pg_url, turns=10)
    before = metrics.HANDOFFS_STARTED._value.get()
    tracker = asyncio.run(store.get_or_create_tracker("handed-off"))
    add_turn(tracker, 1, "I want a human")
    tracker.update(SlotSet("handoff_active", True))
    asyncio.run(store.save(tracker))
    assert metrics.HANDOFFS_STARTED._value.get() == before + 1
    # Setting it true again while an agent has the conversation is the same handoff.
    current = asyncio.run(store.retrieve("handed-off"))
    add_turn(current, 2, "hello?")
    current.update(SlotSet("handoff_active", True))
    asyncio.run(store.save(current))
    assert metrics.HANDOFFS_STARTED._value.get() == before + 1
    # Released, then handed off again: a second handoff.
    current = asyncio.run(store.retrieve("handed-off"))
    current.update(SlotSet("handoff_active", False))
    asyncio.run(store.save(current))
    current = asyncio.run(store.retrieve("handed-off"))
    add_turn(current, 3, "human again please")
    current.update(SlotSet("handoff_active", True))
    asyncio.run(store.save(current))
    assert metrics.HANDOFFS_STARTED._value.get() == before + 2
