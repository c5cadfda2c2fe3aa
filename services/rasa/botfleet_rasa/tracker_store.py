"""Tracker stores that redact PII, bound the active conversation with a sliding window,
and archive older events to the analytics database.

WindowedRedisTrackerStore is the production store (several workers and pods share it,
with the Redis lock store). WindowedInMemoryTrackerStore is the embedded fallback for
machines without Redis.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, Optional, Sequence

from rasa.core.brokers.broker import EventBroker
from rasa.core.tracker_store import InMemoryTrackerStore, RedisTrackerStore
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import BotUttered, SlotSet, UserUttered
from rasa.shared.core.trackers import (
    DialogueStateTracker,
    TrackerEventDiffEngine,
    get_trackers_for_conversation_sessions,
)

from botfleet_common import archive, db, pii
from botfleet_rasa import metrics
from botfleet_rasa.window import redacted_tracker, split_window, with_events

logger = logging.getLogger(__name__)
# HandoffPolicy's default slot: a handoff starts when it turns true.
HANDOFF_SLOT = "handoff_active"


def handoff_started(previous: Optional[DialogueStateTracker], event: object) -> bool:
    """A SlotSet turning the handoff slot true in a conversation not already handed off."""
    was_active = bool(previous.get_slot(HANDOFF_SLOT)) if previous is not None else False
    return isinstance(event, SlotSet) and event.key == HANDOFF_SLOT and bool(event.value) and not was_active


class SlidingWindowMixin:
    """Shared by both stores: archive-then-trim, and one diff for broker and metrics."""

    window_turns: int
    redact_kinds: Sequence[str]
    _archive_engine: Any

    def _init_window(
        self, window_turns: int, archive_url: Optional[str], redact: Sequence[str]
    ) -> None:
        if window_turns < 1:
            raise ValueError(f"window_turns must be at least 1, got {window_turns}")
        self.window_turns = int(window_turns)
        self.redact_kinds = tuple(redact)
        self._archive_engine = db.make_engine(archive_url)
        try:
            db.ensure_schema(self._archive_engine)
        except Exception as error:  # the archive is optional at start-up: retry on use
            metrics.DEPENDENCY_ERRORS.labels("archive_db").inc()
            logger.warning("archive database unavailable at start-up: %s", error)

    def _archive_then_trim(self, tracker: DialogueStateTracker) -> DialogueStateTracker:
        split = split_window(tracker, self.window_turns)
        if split is None:
            return tracker
        try:
            archive.append_events(
                self._archive_engine, tracker.sender_id, [e.as_dict() for e in split.archived]
            )
        except Exception as error:
            # Keep every event in the active tracker until the archive is back:
            # a longer tracker is better than a lost conversation.
            metrics.DEPENDENCY_ERRORS.labels("archive_db").inc()
            logger.warning(
                "archive unavailable, keeping %d turns in the active tracker: %s",
                sum(isinstance(e, UserUttered) for e in tracker.events),
                error,
            )
            return tracker
        metrics.ARCHIVED_EVENTS.inc(len(split.archived))
        return with_events(tracker, split.kept)

    async def _publish_and_observe(
        self, previous: Optional[DialogueStateTracker], tracker: DialogueStateTracker
    ) -> None:
        """Streams the turn's new events to the broker and counts them, from one diff.

        `previous` must be the stored tracker's last session: Rasa hands save() a
        tracker holding only the last session, and the diff is positional."""
        new_events = TrackerEventDiffEngine.event_difference(previous, tracker)  # type: ignore[arg-type]
        event_broker = getattr(self, "event_broker", None)
        if event_broker is not None:
            await self._stream_new_events(event_broker, new_events, tracker.sender_id)  # type: ignore[attr-defined]
        for event in new_events:
            if isinstance(event, UserUttered):
                metrics.MESSAGES.labels(event.input_channel or "unknown", "in").inc()
                metrics.TURN_DURATION.observe(max(0.0, time.time() - event.timestamp))
            elif isinstance(event, BotUttered):
                channel = tracker.latest_message.input_channel if tracker.latest_message else None
                metrics.MESSAGES.labels(channel or "unknown", "out").inc()
            elif handoff_started(previous, event):
                metrics.HANDOFFS_STARTED.inc()


def last_session(tracker: Optional[DialogueStateTracker]) -> Optional[DialogueStateTracker]:
    """What retrieve() returns for a stored tracker: its last conversation session."""
    if tracker is None:
        return None
    sessions = get_trackers_for_conversation_sessions(tracker)
    return sessions[-1] if len(sessions) > 1 else tracker


def _window_kwargs(kwargs: Dict[str, Any]) -> tuple[int, Optional[str], Sequence[str]]:
    return (
        int(kwargs.pop("window_turns", 20)),
        kwargs.pop("archive_url", None),
        kwargs.pop("redact", pii.DEFAULT_KINDS),
    )


class WindowedRedisTrackerStore(SlidingWindowMixin, RedisTrackerStore):
    """endpoints.yml:

    tracker_store:
      type: botfleet_rasa.tracker_store.WindowedRedisTrackerStore
      url: redis-host        # or host:
      port: 6379
      window_turns: 20       # user turns kept in Redis
      archive_url: postgresql://user@host/botfleet
    """

    def __init__(
        self,
        domain: Domain,
        url: Optional[str] = None,
        event_broker: Optional[EventBroker] = None,
        **kwargs: Any,
    ) -> None:
        window_turns, archive_url, redact = _window_kwargs(kwargs)
        kwargs.setdefault("host", url or "localhost")
        kwargs["port"] = int(kwargs.get("port", 6379))
        kwargs["db"] = int(kwargs.get("db", 0))
        super().__init__(domain, event_broker=event_broker, **kwargs)
        self._init_window(window_turns, archive_url, redact)

    async def save(self, tracker: DialogueStateTracker, timeout: Optional[float] = None) -> None:
        tracker = redacted_tracker(tracker, self.redact_kinds)
        stored = self.red.get(self.key_prefix + tracker.sender_id)
        prior = self.deserialise_tracker(tracker.sender_id, stored) if stored is not None else None
        # One Redis read serves the broker diff, the metrics and the merge.
        await self._publish_and_observe(last_session(prior), tracker)
        if prior is not None:
            tracker = self._merge_trackers(prior, tracker)
        tracker = self._archive_then_trim(tracker)
        self.red.set(
            self.key_prefix + tracker.sender_id,
            self.serialise_tracker(tracker),
            ex=timeout or self.record_exp,
        )


class WindowedInMemoryTrackerStore(SlidingWindowMixin, InMemoryTrackerStore):
    """The embedded fallback: one process only, archive in SQLite by default."""

    def __init__(
        self,
        domain: Domain,
        event_broker: Optional[EventBroker] = None,
        **kwargs: Any,
    ) -> None:
        window_turns, archive_url, redact = _window_kwargs(kwargs)
        kwargs.pop("url", None)
        super().__init__(domain, event_broker=event_broker, **kwargs)
        self._init_window(window_turns, archive_url, redact)

    async def save(self, tracker: DialogueStateTracker) -> None:
        tracker = redacted_tracker(tracker, self.redact_kinds)
        await self._publish_and_observe(await self.retrieve(tracker.sender_id), tracker)
        tracker = self._archive_then_trim(tracker)
        self.store[tracker.sender_id] = self.serialise_tracker(tracker)

