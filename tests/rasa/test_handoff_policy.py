from rasa.shared.core.events import ActionExecuted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from botfleet_rasa.policies.handoff import should_stay_silent


def tracker(domain, *events):
    return DialogueStateTracker.from_events("s", list(events), domain.slots)


def test_silent_after_user_message_during_handoff(domain):
    handed_off = tracker(domain, SlotSet("handoff_active", True), ActionExecuted("action_listen"), UserUttered("hello?"))
    assert should_stay_silent(handed_off, "handoff_active")


def test_not_silent_without_handoff_or_mid_turn(domain):
    normal = tracker(domain, ActionExecuted("action_listen"), UserUttered("hi"))
    assert not should_stay_silent(normal, "handoff_active")
    mid_turn = tracker(domain, SlotSet("handoff_active", True), ActionExecuted("action_listen"), UserUttered("hi"), ActionExecuted("utter_greet"))
    assert not should_stay_silent(mid_turn, "handoff_active")
    released = tracker(domain, SlotSet("handoff_active", True), SlotSet("handoff_active", False), ActionExecuted("action_listen"), UserUttered("hi"))
    assert not should_stay_silent(released, "handoff_active")
