"""Actions run as rasa-sdk runs them, against a real PostgreSQL (or a dead one)."""

import asyncio

import sqlalchemy as sa
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from botfleet_actions import actions, metrics
from botfleet_actions.forms import ValidateFlightForm, today


def tracker(slots=None, events=None, latest=None, sender="unit-user"):
    return Tracker(sender, slots or {}, latest or {}, events or [], False, None, None, "action_listen")


def run(action, tr):
    dispatcher = CollectingDispatcher()
    events = asyncio.run(action.run(dispatcher, tr, {}))
    return [m.get("text") for m in dispatcher.messages], dispatcher.messages, events


def counter(metric, **labels):
    return metric.labels(**labels)._value.get()


def test_price_of_a_catalog_product(repo):
    texts, _, events = run(actions.ActionProductPrice(), tracker({"product": "laptop"}))
    assert texts == ["The laptop costs 999.00 USD."]
    assert {"event": "slot", "timestamp": None, "name": "product", "value": None} in events


def test_unknown_product_is_answered_honestly(repo):
    texts, _, _ = run(actions.ActionProductPrice(), tracker({"product": "hoverboard"}))
    assert "couldn't find \"hoverboard\"" in texts[0]


def test_catalog_outage_apologises_and_is_counted(dead_repo, caplog):
    before = counter(metrics.ACTION_ERRORS, action="action_product_price", error="database_unavailable")
    with caplog.at_level("WARNING"):
        texts, _, _ = run(actions.ActionProductPrice(), tracker({"product": "laptop"}))
    assert "database unavailable in action_product_price" in caplog.text
    assert texts == [actions.ActionProductPrice.apology]
    assert counter(metrics.ACTION_ERRORS, action="action_product_price", error="database_unavailable") == before + 1


def test_order_status(repo):
    texts, _, _ = run(actions.ActionOrderStatus(), tracker({"order_id": "ord-10042"}))
    assert texts == ["Order ORD-10042 is shipped with DHL, expected in 2 business days."]
    texts, _, _ = run(actions.ActionOrderStatus(), tracker({"order_id": "ord-99999"}))
    assert texts[0].startswith("I couldn't find an order ORD-99999")


def test_booking_is_stored_and_referenced(repo):
    slots = {"destination": "Berlin", "travel_date": "2026-11-27", "passengers": "2"}
    texts, _, events = run(actions.ActionBookFlight(), tracker(slots, sender="booker"))
    reference = next(e["value"] for e in events if e["name"] == "booking_reference")
    assert reference.startswith("BF-") and reference in texts[0]
    with repo.engine.connect() as connection:
        row = connection.execute(sa.text("SELECT destination, passengers FROM flight_bookings WHERE reference = :r"), {"r": reference}).one()
    assert tuple(row) == ("Berlin", 2)


def test_handoff_is_recorded_and_listed(repo):
    texts, _, events = run(actions.ActionHandoff(), tracker(sender="needs-human"))
    assert "human agent" in texts[0]
    assert events[-1]["name"] == "handoff_active" and events[-1]["value"] is True
    open_ = asyncio.run(repo.open_handoffs())
    assert "needs-human" in [h.sender_id for h in open_]
    assert asyncio.run(repo.release_handoff("needs-human", "alice")) == 1
    assert "needs-human" not in [h.sender_id for h in asyncio.run(repo.open_handoffs())]


def test_handoff_outage_does_not_pretend(dead_repo):
    texts, _, events = run(actions.ActionHandoff(), tracker())
    assert texts == [actions.ActionHandoff.apology]
    assert events == []


def test_feedback_rating_is_stored(repo):
    run(actions.ActionStoreFeedback(), tracker({"rating": "4"}, sender="rater"))
    with repo.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT rating FROM feedback WHERE sender_id = 'rater'")).scalar() == 4
    texts, _, _ = run(actions.ActionStoreFeedback(), tracker({"rating": "9"}))
    assert texts == ["Ratings go from 1 to 5. Thanks anyway!"]


def fallback_event(name="nlu_fallback"):
    return {"event": "user", "parse_data": {"intent": {"name": name}}}


def test_clarify_offers_the_top_two_intents():
    latest = {"intent_ranking": [
        {"name": "nlu_fallback", "confidence": 0.65},
        {"name": "order_status", "confidence": 0.5},
        {"name": "ask_product_price", "confidence": 0.4},
        {"name": "greet", "confidence": 0.1},
    ]}
    texts, messages, _ = run(actions.ActionClarify(), tracker(events=[fallback_event("greet"), fallback_event()], latest=latest))
    assert texts[0].startswith("Sorry, I didn't quite get that. Did you mean")
    assert [b["payload"] for b in messages[0]["buttons"]] == ["/order_status", "/ask_product_price", "/request_human"]


def test_clarify_offers_a_human_after_two_failures():
    texts, messages, _ = run(actions.ActionClarify(), tracker(events=[fallback_event(), clarified(), fallback_event()]))
    assert "talk to a person" in texts[0]
    assert messages[0]["buttons"][0]["payload"] == "/request_human"


def test_clarify_names_supported_languages():
    latest = {"language": {"code": "es", "supported": False, "supported_languages": ["en"]}}
    texts, _, _ = run(actions.ActionClarify(), tracker(events=[fallback_event()], latest=latest))
    assert texts == ["Sorry, I can only help in these languages: English. Could you write to me in one of them?"]


def clarified():
    return {"event": "action", "name": "action_clarify"}


def test_failures_count_nlu_and_dialogue_fallbacks_in_a_row():
    # An understood intent the dialogue could not handle (clarified) counts as a failure.
    assert actions.consecutive_failures([fallback_event("inform"), clarified(), fallback_event("inform")]) == 2
    assert actions.consecutive_failures([fallback_event(), clarified(), fallback_event("greet"), fallback_event()]) == 1
    assert actions.consecutive_failures([fallback_event(), clarified(), fallback_event()]) == 2


def test_address_spans_every_address_entity():
    message = {"text": "ship to 456 oak ave, apt 10", "entities": [
        {"entity": "address", "start": 8, "end": 19, "value": "456 oak ave"},
        {"entity": "address", "start": 21, "end": 27, "value": "apt 10"},
    ]}
    assert actions.address_from_message(message) == "456 oak ave, apt 10"
    assert actions.address_from_message({"text": "hi", "entities": []}) is None


def test_read_back_uses_the_whole_address():
    latest = {"text": "ship to 456 oak ave, apt 10", "entities": [
        {"entity": "address", "start": 8, "end": 19}, {"entity": "address", "start": 21, "end": 27}]}
    texts, _, events = run(actions.ActionReadBackAddress(), tracker({"address": "apt 10"}, latest=latest))
    assert texts == ["Just to confirm, I'll ship to 456 Oak Ave, Apt 10. Is that right?"]
    assert events[-1]["value"] == "456 oak ave, apt 10"


def test_flight_form_validation():
    form = ValidateFlightForm()
    dispatcher = CollectingDispatcher()
    assert form.validate_travel_date("next friday", dispatcher, tracker(), {})["travel_date"] > today().isoformat()
    assert form.validate_travel_date("2001-01-01", dispatcher, tracker(), {}) == {"travel_date": None}
    assert form.validate_passengers("two", dispatcher, tracker(), {}) == {"passengers": "2"}
    assert form.validate_passengers("40", dispatcher, tracker(), {}) == {"passengers": None}
    assert form.validate_destination("to berlin", dispatcher, tracker(), {}) == {"destination": "Berlin"}
