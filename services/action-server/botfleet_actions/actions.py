"""The demo bot's custom actions.

Every action that touches the database degrades the same way (DatabaseAction): the
user gets an honest apology, the error is counted and logged, and the turn completes.
"""

from __future__ import annotations

import abc
import logging
import os
from typing import Any, Dict, List, Optional

import sqlalchemy.exc
from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet, UserUtteranceReverted
from rasa_sdk.executor import CollectingDispatcher

from botfleet_actions import metrics
from botfleet_actions.repository import Repository
from botfleet_actions.slot_parsing import normalize_order_id, title_address

logger = logging.getLogger(__name__)

FALLBACK_INTENT = "nlu_fallback"
FLIGHT_SLOTS = ("destination", "travel_date", "passengers")
# Intents that make no sense as a "Did you mean ...?" suggestion on their own.
NOT_SUGGESTED = {FALLBACK_INTENT, "inform", "affirm", "deny", "stop", "restart"}
# How users see intents on "Did you mean ...?" buttons.
INTENT_DESCRIPTIONS = {
    "greet": "Say hello",
    "goodbye": "End the conversation",
    "thank_you": "Say thanks",
    "bot_challenge": "Ask whether I'm a bot",
    "affirm": "Say yes",
    "deny": "Say no",
    "stop": "Cancel what we're doing",
    "restart": "Start over",
    "ask_product_price": "Ask about a product's price",
    "provide_shipping_address": "Give a shipping address",
    "order_status": "Check an order's status",
    "book_flight": "Book a flight",
    "inform": "Give details",
    "change_flight_detail": "Change a booking detail",
    "request_human": "Talk to a person",
    "give_feedback": "Rate this conversation",
}

_repository: Optional[Repository] = None


def repository() -> Repository:
    """The process-wide repository, created on first use from BOTFLEET_DATABASE_URL."""
    global _repository
    if _repository is None:
        _repository = Repository.from_url(os.environ.get("BOTFLEET_DATABASE_URL"))
    return _repository


def use_repository(repo: Repository) -> None:
    global _repository
    _repository = repo


class DatabaseAction(Action, abc.ABC):
    """An action whose database failures become an apology instead of an error.
    (Abstract, so rasa-sdk does not register it as an action of its own.)"""

    apology = "Sorry, I can't reach that information right now. Please try again in a few minutes."

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[str, Any]
    ) -> List[EventType]:
        try:
            return await self.run_with(repository(), dispatcher, tracker, domain)
        except (sqlalchemy.exc.SQLAlchemyError, OSError) as error:
            metrics.DEPENDENCY_ERRORS.labels("database").inc()
            metrics.ACTION_ERRORS.labels(self.name(), "database_unavailable").inc()
            logger.warning(
                "database unavailable in %s: %s", self.name(), type(error).__name__,
                extra={"action": self.name(), "sender_id": tracker.sender_id},
            )
            dispatcher.utter_message(text=self.apology)
            return self.on_failure(tracker)

    @abc.abstractmethod
    async def run_with(
        self,
        repo: Repository,
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: Dict[str, Any],
    ) -> List[EventType]:
        """The action's work; run() turns database errors raised here into an apology."""

    def on_failure(self, tracker: Tracker) -> List[EventType]:
        return []


class ActionProductPrice(DatabaseAction):
    apology = "Sorry, our product catalog is unavailable right now. Please try again in a few minutes."

    def name(self) -> str:
        return "action_product_price"

    async def run_with(self, repo, dispatcher, tracker, domain):  # type: ignore[no-untyped-def]
        product_name = (tracker.get_slot("product") or "").strip().lower()
        product = await repo.product_by_name(product_name) if product_name else None
        if product is None:
            dispatcher.utter_message(
                text=f"Sorry, I couldn't find \"{product_name}\" in our catalog."
                " I can give prices for laptops, smartphones, headphones, tablets and more."
            )
        elif not product.in_stock:
            dispatcher.utter_message(text=f"The {product.name} costs {product.price}, but it's out of stock.")
        else:
            dispatcher.utter_message(text=f"The {product.name} costs {product.price}.")
        return [SlotSet("product", None)]

    def on_failure(self, tracker: Tracker) -> List[EventType]:
        return [SlotSet("product", None)]


class ActionOrderStatus(DatabaseAction):
    apology = "Sorry, I can't look up orders right now. Please try again in a few minutes."

    def name(self) -> str:
        return "action_order_status"

    async def run_with(self, repo, dispatcher, tracker, domain):  # type: ignore[no-untyped-def]
        order_id = normalize_order_id(tracker.get_slot("order_id") or "")
        order = await repo.order(order_id) if order_id else None
        if order is None:
            dispatcher.utter_message(
                text=f"I couldn't find an order {order_id or 'with that number'}."
                " Order numbers look like ORD-12345."
            )
        else:
            details = ""
            if order.carrier:
                details += f" with {order.carrier}"
            if order.eta:
                details += f", expected in {order.eta}" if order.status == "shipped" else f" ({order.eta})"
            dispatcher.utter_message(text=f"Order {order.order_id} is {order.status}{details}.")
        return [SlotSet("order_id", None)]

    def on_failure(self, tracker: Tracker) -> List[EventType]:
        return [SlotSet("order_id", None)]


class ActionReadBackAddress(Action):
    def name(self) -> str:
        return "action_read_back_address"

    async def run(self, dispatcher, tracker, domain):  # type: ignore[no-untyped-def]
        address = address_from_message(tracker.latest_message or {}) or tracker.get_slot("address")
        if not address:
            dispatcher.utter_message(
                text="Please tell me the full shipping address, for example \"Ship to 456 Oak Ave, Apt 10\"."
            )
            return []
        dispatcher.utter_message(
            text=f"Just to confirm, I'll ship to {title_address(address)}. Is that right?",
            buttons=[
                {"title": "Yes", "payload": "/affirm"},
                {"title": "No", "payload": "/deny"},
            ],
        )
        return [SlotSet("address", address)]


class ActionSaveAddress(DatabaseAction):
    apology = "Sorry, I couldn't save your address right now. Please try again in a few minutes."

    def name(self) -> str:
        return "action_save_address"

    async def run_with(self, repo, dispatcher, tracker, domain):  # type: ignore[no-untyped-def]
        address = tracker.get_slot("address")
        if not address:
            dispatcher.utter_message(text="Which address should I ship to?")
            return []
        await repo.save_address(tracker.sender_id, title_address(address))
        dispatcher.utter_message(text=f"Done: your orders will ship to {title_address(address)}.")
        return []


class ActionBookFlight(DatabaseAction):
    apology = "Sorry, I couldn't complete the booking right now and nothing was booked. Please try again shortly."

    def name(self) -> str:
        return "action_book_flight"

    async def run_with(self, repo, dispatcher, tracker, domain):  # type: ignore[no-untyped-def]
        values = {slot: tracker.get_slot(slot) for slot in FLIGHT_SLOTS}
        if not all(values.values()):
            dispatcher.utter_message(text="I need a destination, a date and the number of passengers first.")
            return []
        reference = await repo.book_flight(
            tracker.sender_id, values["destination"], values["travel_date"], int(values["passengers"])
        )
        dispatcher.utter_message(
            text=f"Booked! Your flight to {values['destination']} on {values['travel_date']}"
            f" for {values['passengers']} passenger(s) has reference {reference}."
        )
        return [SlotSet("booking_reference", reference)] + [SlotSet(s, None) for s in FLIGHT_SLOTS]


class ActionResetFlightField(Action):
    def name(self) -> str:
        return "action_reset_flight_field"

    async def run(self, dispatcher, tracker, domain):  # type: ignore[no-untyped-def]
        field = tracker.get_slot("flight_field")
        events: List[EventType] = [SlotSet("flight_field", None)]
        if field in FLIGHT_SLOTS:
            events.insert(0, SlotSet(field, None))
        return events


class ActionCancelBooking(Action):
    def name(self) -> str:
        return "action_cancel_booking"

    async def run(self, dispatcher, tracker, domain):  # type: ignore[no-untyped-def]
        dispatcher.utter_message(text="Okay, I've cancelled the flight booking. Nothing was booked.")
        return [SlotSet(slot, None) for slot in FLIGHT_SLOTS] + [SlotSet("requested_slot", None)]


CLARIFY_ACTION = "action_clarify"


def consecutive_failures(events: List[Dict[str, Any]]) -> int:
    """How many user messages in a row the bot could not handle, counting the current
    one. A message failed when the bot answered it with a clarification: either the NLU
    fell back, or the dialogue did (the core fallback also runs action_clarify)."""
    failed_turns: List[bool] = []
    for event in events:
        if event.get("event") == "user":
            intent = ((event.get("parse_data") or {}).get("intent") or {}).get("name")
            failed_turns.append(intent == FALLBACK_INTENT)
        elif event.get("event") == "action" and event.get("name") == CLARIFY_ACTION and failed_turns:
            failed_turns[-1] = True
    if failed_turns:
        failed_turns[-1] = True  # this action runs because the latest message failed
    count = 0
    for failed in reversed(failed_turns):
        if not failed:
            break
        count += 1
    return count


class ActionClarify(Action):
    """"Did you mean ...?" with the top two intents; after repeated failures, a human.

    Like Rasa's own fallback it reverts the user message: the misunderstood text does
    not steer later predictions (an active form simply continues), and the turn ends
    here even when it ran as the dialogue's core fallback."""

    def name(self) -> str:
        return CLARIFY_ACTION

    async def run(self, dispatcher, tracker, domain):  # type: ignore[no-untyped-def]
        self.clarify(dispatcher, tracker)
        return [UserUtteranceReverted()]

    def clarify(self, dispatcher: CollectingDispatcher, tracker: Tracker) -> None:
        latest = tracker.latest_message or {}
        language = latest.get("language") or {}
        if language and not language.get("supported", True):
            names = ", ".join(language.get("supported_languages") or ["English"])
            dispatcher.utter_message(
                text=f"Sorry, I can only help in these languages: {_language_names(names)}."
                " Could you write to me in one of them?"
            )
            return
        if consecutive_failures(tracker.events) >= 2:
            dispatcher.utter_message(
                text="Sorry, I'm still not sure what you need. Would you like to talk to a person?",
                buttons=[
                    {"title": "Talk to a person", "payload": "/request_human"},
                    {"title": "No, start over", "payload": "/restart"},
                ],
            )
            return
        ranking = [
            r for r in latest.get("intent_ranking") or []
            if r.get("name") not in NOT_SUGGESTED
        ][:2]
        buttons = [
            {"title": INTENT_DESCRIPTIONS.get(r["name"], r["name"].replace("_", " ")), "payload": f"/{r['name']}"}
            for r in ranking
        ]
        buttons.append({"title": "Something else", "payload": "/request_human"})
        options = " or ".join(f"\"{b['title']}\"" for b in buttons[:-1])
        dispatcher.utter_message(text=f"Sorry, I didn't quite get that. Did you mean {options}?", buttons=buttons)


_LANGUAGE_NAMES = {"en": "English", "de": "German", "es": "Spanish", "fr": "French", "it": "Italian"}


def _language_names(codes: str) -> str:
    return ", ".join(_LANGUAGE_NAMES.get(code.strip(), code.strip()) for code in codes.split(","))


def _after_clarification(events: List[Dict[str, Any]]) -> bool:
    """True when the bot's last action before this turn was a clarification."""
    actions = [e.get("name") for e in events if e.get("event") == "action" and e.get("name") != "action_listen"]
    return bool(actions) and actions[-1] == CLARIFY_ACTION


def address_from_message(message: Dict[str, Any]) -> Optional[str]:
    """The whole address the user wrote. DIET may tag "456 oak ave, apt 10" as two
    address entities; the span from the first to the last covers both."""
    spans = [e for e in message.get("entities") or [] if e.get("entity") == "address" and "start" in e]
    text = message.get("text") or ""
    if not spans or not text:
        return None
    return text[min(e["start"] for e in spans) : max(e["end"] for e in spans)].strip(" ,.") or None


class ActionHandoff(DatabaseAction):
    apology = (
        "Sorry, I can't reach our support agents right now."
        " Please try again in a few minutes."
    )

    def name(self) -> str:
        return "action_handoff"

    async def run_with(self, repo, dispatcher, tracker, domain):  # type: ignore[no-untyped-def]
        if tracker.get_slot("handoff_active"):
            return []
        reason = "repeated fallback" if _after_clarification(tracker.events) else "user request"
        await repo.request_handoff(tracker.sender_id, reason)
        metrics.HANDOFFS.inc()
        logger.info("conversation handed to a human agent", extra={"sender_id": tracker.sender_id, "reason": reason})
        dispatcher.utter_message(
            text="I'm connecting you with a human agent. They'll reply here as soon as they can."
        )
        return [SlotSet("handoff_active", True)]


class ActionStoreFeedback(DatabaseAction):
    apology = "Thanks for your feedback!"

    def name(self) -> str:
        return "action_store_feedback"

    async def run_with(self, repo, dispatcher, tracker, domain):  # type: ignore[no-untyped-def]
        raw = str(tracker.get_slot("rating") or "").strip()
        rating = int(raw) if raw.isdigit() else 0
        if not 1 <= rating <= 5:
            dispatcher.utter_message(text="Ratings go from 1 to 5. Thanks anyway!")
            return [SlotSet("rating", None)]
        await repo.store_feedback(tracker.sender_id, rating)
        metrics.FEEDBACK.labels(str(rating)).inc()
        dispatcher.utter_message(text="Thanks for your feedback!")
        return [SlotSet("rating", None)]

    def on_failure(self, tracker: Tracker) -> List[EventType]:
        # The rating is in the log line above and in the tracker archive.
        return [SlotSet("rating", None)]
