from rasa.shared.core.events import ActionExecuted, ActiveLoop, BotUttered, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from botfleet_rasa.window import is_snapshot, redacted_tracker, split_window, with_events


def turn(n, *extra):
    return [UserUttered(f"message {n}", timestamp=n), *extra, BotUttered(f"reply {n}", timestamp=n + 0.5), ActionExecuted("action_listen", timestamp=n + 0.6)]


def build(domain, events):
    return DialogueStateTracker.from_events("w", events, domain.slots)


def test_short_trackers_are_left_alone(domain):
    assert split_window(build(domain, turn(1) + turn(2)), max_turns=2) is None


def test_window_keeps_last_turns_and_snapshots_state(domain):
    events = [ActionExecuted("action_listen", timestamp=0)]
    events += turn(1, SlotSet("destination", "Berlin", timestamp=1.1), ActiveLoop("flight_form", timestamp=1.2))
    events += turn(2, SlotSet("travel_date", "2026-11-27", timestamp=2.1)) + turn(3) + turn(4)
    tracker = build(domain, events)
    split = split_window(tracker, max_turns=2)
    assert [e.text for e in split.kept if isinstance(e, UserUttered)] == ["message 3", "message 4"]
    assert [e.text for e in split.archived if isinstance(e, UserUttered)] == ["message 1", "message 2"]
    trimmed = with_events(tracker, split.kept)
    # The dialogue state is unchanged by trimming.
    assert trimmed.current_slot_values() == tracker.current_slot_values()
    assert trimmed.active_loop_name == "flight_form"
    assert all(is_snapshot(e) for e in split.kept[: -len(turn(3) + turn(4))])


def test_snapshots_are_not_archived_twice(domain):
    tracker = build(domain, turn(1, SlotSet("destination", "Paris", timestamp=1.1)) + turn(2) + turn(3))
    first = split_window(tracker, max_turns=2)
    again = with_events(tracker, first.kept + turn(4))
    second = split_window(again, max_turns=2)
    assert not any(is_snapshot(e) for e in second.archived)
    assert [e.text for e in second.archived if isinstance(e, UserUttered)] == ["message 2"]
    assert with_events(again, second.kept).get_slot("destination") == "Paris"


def test_redacted_tracker_copies_without_pii(domain):
    tracker = build(domain, [UserUttered("card 4111 1111 1111 1111", parse_data={"text": "card 4111 1111 1111 1111"}), BotUttered("mail me@x.org")])
    clean = redacted_tracker(tracker, ("card", "email"))
    assert [e.text for e in clean.events] == ["card [CARD]", "mail [EMAIL]"]
    assert tracker.events[0].text.startswith("card 4111")  # the original is untouched
