"""Multi-turn conversations through the REST channel against the real stack."""

import json
import os
import subprocess
from datetime import date, timedelta

import requests
from conftest import ROOT


def next_weekday(weekday: int) -> str:
    today = date.today()
    return (today + timedelta(days=(weekday - today.weekday() - 1) % 7 + 1)).isoformat()


def test_small_talk(bot, sender):
    assert "support assistant" in bot.texts(sender, "hello")[0]
    assert "bot" in bot.texts(sender, "are you a bot?")[0]
    assert bot.texts(sender, "thanks a lot")[0].startswith("You're welcome")


def test_price_of_a_product_from_the_catalog(bot, sender):
    assert bot.texts(sender, "How much does the laptop cost?") == ["The laptop costs 999.00 USD."]


def test_unknown_product_is_answered_honestly(bot, sender):
    assert "couldn't find \"hoverboard\"" in bot.texts(sender, "What's the price of a hoverboard?")[0]


def test_price_question_without_product_asks_for_it(bot, sender):
    assert bot.texts(sender, "how much does it cost?") == ["Which product would you like the price of?"]
    assert bot.texts(sender, "the tablet") == ["The tablet costs 449.00 USD."]


def test_shipping_address_is_read_back_and_saved(bot, sender, database):
    replies = bot.say(sender, "Ship to 456 Oak Ave, Apt 10")
    assert replies[0]["text"] == "Just to confirm, I'll ship to 456 Oak Ave, Apt 10. Is that right?"
    assert [b["payload"] for b in replies[0]["buttons"]] == ["/affirm", "/deny"]
    assert bot.texts(sender, "yes")[0].startswith("Done: your orders will ship to 456 Oak Ave, Apt 10")
    row = database.execute("SELECT address FROM shipping_addresses WHERE sender_id = %s", (sender,)).fetchone()
    assert row == ("456 Oak Ave, Apt 10",)


def test_wrong_address_is_asked_again(bot, sender):
    bot.say(sender, "My address is 123 Main St")
    assert bot.texts(sender, "no") == ["Okay, please tell me the correct shipping address."]


def test_order_status_by_id(bot, sender):
    assert bot.texts(sender, "where is my order ORD-10042?") == ["Order ORD-10042 is shipped with DHL, expected in 2 business days."]


def test_order_status_asks_for_the_id(bot, sender):
    assert bot.texts(sender, "I want to track my order") == ["What's your order number? It looks like ORD-12345."]
    assert bot.texts(sender, "ORD-10043")[0].startswith("Order ORD-10043 is processing")


def test_flight_booking_form_asks_only_what_is_missing(bot, sender, database):
    assert bot.texts(sender, "I want to fly to Berlin") == ["What date would you like to travel?"]
    assert bot.texts(sender, "next Friday") == ["How many passengers?"]
    friday = next_weekday(4)
    assert bot.slot(sender, "travel_date") == friday
    replies = bot.say(sender, "2")
    assert replies[0]["text"] == f"Please confirm: a flight to Berlin on {friday} for 2 passenger(s). Shall I book it?"
    booked = bot.texts(sender, "yes")[0]
    assert booked.startswith(f"Booked! Your flight to Berlin on {friday} for 2 passenger(s) has reference BF-")
    reference = booked.rsplit(" ", 1)[-1].rstrip(".")
    row = database.execute("SELECT destination, travel_date, passengers FROM flight_bookings WHERE reference = %s", (reference,)).fetchone()
    assert row == ("Berlin", friday, 2)


def test_all_slots_in_one_message_go_straight_to_confirmation(bot, sender):
    replies = bot.texts(sender, "book a flight to Paris tomorrow for 3 people")
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    assert replies == [f"Please confirm: a flight to Paris on {tomorrow} for 3 passenger(s). Shall I book it?"]


def test_deny_lets_the_user_change_a_slot(bot, sender):
    bot.say(sender, "I want to fly to Rome")
    bot.say(sender, "tomorrow")
    bot.say(sender, "1")
    assert bot.texts(sender, "no") == ["What would you like to change?"]
    assert bot.texts(sender, '/change_flight_detail{"flight_field": "destination"}') == ["Where would you like to fly to?"]
    replies = bot.texts(sender, "Madrid")
    assert replies[0].startswith("Please confirm: a flight to Madrid on ")
    assert bot.slot(sender, "passengers") == "1"


def test_cancel_mid_form(bot, sender):
    bot.say(sender, "I need to book a flight")
    assert bot.texts(sender, "cancel") == ["Okay, I've cancelled the flight booking. Nothing was booked."]
    tracker = bot.tracker(sender)
    assert tracker["active_loop"] == {} or tracker["active_loop"].get("name") is None
    assert tracker["slots"]["destination"] is None
    assert "support assistant" in bot.texts(sender, "hi")[0]


def test_fallback_clarifies_then_offers_a_human_then_hands_off(bot, sender, database):
    first = bot.say(sender, "blorp zzkx quib")
    assert first[0]["text"].startswith("Sorry, I didn't quite get that. Did you mean")
    assert len(first[0]["buttons"]) == 3
    second = bot.say(sender, "flibber wobble snorf")
    assert "talk to a person" in second[0]["text"]
    handoff = bot.texts(sender, second[0]["buttons"][0]["payload"])
    assert handoff == ["I'm connecting you with a human agent. They'll reply here as soon as they can."]
    # While an agent owns the conversation the bot stays silent.
    assert bot.say(sender, "hello? anyone?") == []
    assert bot.say(sender, "How much does the laptop cost?") == []
    listed = requests.get(f"{bot.actions}/agent/handoffs", headers=bot.agent_headers, timeout=10).json()
    assert sender in [h["sender_id"] for h in listed]
    cli = subprocess.run(
        [str(ROOT / ".venvs/actions/bin/botfleet-agent"), "handoffs"],
        env={**os.environ, "BOTFLEET_AGENT_API": bot.actions, "BOTFLEET_AGENT_TOKEN": bot.config["agent_token"]},
        capture_output=True, text=True, check=True,
    )
    assert sender in [h["sender_id"] for h in json.loads(cli.stdout)]
    assert database.execute("SELECT reason FROM handoffs WHERE sender_id = %s", (sender,)).fetchone() == ("repeated fallback",)
    released = requests.post(f"{bot.actions}/agent/handoffs/{sender}/release", json={"agent": "alice"}, headers=bot.agent_headers, timeout=10)
    assert released.status_code == 200
    assert bot.texts(sender, "How much does the laptop cost?") == ["The laptop costs 999.00 USD."]


def test_direct_handoff_request(bot, sender):
    assert bot.texts(sender, "I want to talk to a person")[0].startswith("I'm connecting you with a human agent")
    assert bot.slot(sender, "handoff_active") is True


def test_agent_api_needs_its_token(bot):
    assert requests.get(f"{bot.actions}/agent/handoffs", timeout=10).status_code == 401
    missing = requests.post(f"{bot.actions}/agent/handoffs/nobody/release", json={}, headers=bot.agent_headers, timeout=10)
    assert missing.status_code == 404


def test_unsupported_language_gets_a_polite_reply(bot, sender):
    assert bot.texts(sender, "¿Cuánto cuesta el portátil?") == [
        "Sorry, I can only help in these languages: English. Could you write to me in one of them?"
    ]


def test_feedback_at_the_end_is_stored(bot, sender, database):
    replies = bot.say(sender, "bye")
    assert replies[0]["text"].startswith("Before you go")
    assert [b["title"] for b in replies[0]["buttons"]] == ["1", "2", "3", "4", "5"]
    assert bot.texts(sender, replies[0]["buttons"][3]["payload"]) == ["Thanks for your feedback!", "Goodbye, and thanks for chatting!"]
    assert database.execute("SELECT rating FROM feedback WHERE sender_id = %s", (sender,)).fetchone() == (4,)


def test_start_over_resets_the_conversation(bot, sender):
    bot.say(sender, "I want to fly to Tokyo")
    assert bot.texts(sender, "let's start over") == ["Let's start over. How can I help?"]
    assert bot.slot(sender, "destination") is None
