"""Pure tracker transformations applied before a tracker is stored: PII redaction and
the sliding window that bounds the active conversation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Sequence

from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.events import ActionExecuted, ActiveLoop, Event, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from botfleet_common.pii import redact_value

SNAPSHOT_MARK = "botfleet_window_snapshot"


def redacted_tracker(tracker: DialogueStateTracker, kinds: Sequence[str]) -> DialogueStateTracker:
    """A copy of the tracker whose every event has its strings redacted."""
    events = [redact_value(event.as_dict(), kinds) for event in tracker.events]
    return DialogueStateTracker.from_dict(
        tracker.sender_id, events, tracker.slots.values(), tracker._max_event_history
    )


def is_snapshot(event: Event) -> bool:
    return bool((event.metadata or {}).get(SNAPSHOT_MARK))


@dataclass
class WindowSplit:
    """Events to archive, and the events the active tracker keeps."""

    archived: List[Event]
    kept: List[Event]


def split_window(tracker: DialogueStateTracker, max_turns: int) -> WindowSplit | None:
    """Splits off everything before the last `max_turns` user turns, or None if the
    tracker is within the window. The kept events start with a snapshot (slots, active
    loop, action_listen) of the state at the cut, so the dialogue continues unchanged."""
    events = list(tracker.events)
    user_indices = [i for i, e in enumerate(events) if isinstance(e, UserUttered)]
    if len(user_indices) <= max_turns:
        return None
    cut = user_indices[len(user_indices) - max_turns]
    state = tracker.init_copy()
    for event in events[:cut]:
        state.update(event)
    timestamp = events[cut].timestamp
    mark: Dict[str, Any] = {SNAPSHOT_MARK: True}
    snapshot: List[Event] = [
        SlotSet(slot.name, slot.value, timestamp=timestamp, metadata=dict(mark))
        for slot in state.slots.values()
        if slot.value != slot.initial_value
    ]
    if state.active_loop_name:
        snapshot.append(ActiveLoop(state.active_loop_name, timestamp=timestamp, metadata=dict(mark)))
    snapshot.append(ActionExecuted(ACTION_LISTEN_NAME, timestamp=timestamp, metadata=dict(mark)))
    archived = [e for e in events[:cut] if not is_snapshot(e)]
    return WindowSplit(archived=archived, kept=snapshot + events[cut:])


def with_events(tracker: DialogueStateTracker, events: List[Event]) -> DialogueStateTracker:
    rebuilt = tracker.init_copy()
    for event in events:
        rebuilt.update(event)
    return rebuilt
