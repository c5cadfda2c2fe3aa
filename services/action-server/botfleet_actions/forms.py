"""Slot validation for the demo bot's forms."""

from __future__ import annotations

import os
from datetime import date, datetime
from typing import Any, Dict
from zoneinfo import ZoneInfo

from rasa_sdk import FormValidationAction, Tracker
from rasa_sdk.executor import CollectingDispatcher

from botfleet_actions.slot_parsing import clean_destination, parse_passengers, resolve_date

MAX_PASSENGERS = 9


def today() -> date:
    """Today where the bot's users are (BOTFLEET_TIMEZONE, default UTC)."""
    return datetime.now(ZoneInfo(os.environ.get("BOTFLEET_TIMEZONE", "UTC"))).date()


class ValidateFlightForm(FormValidationAction):
    def name(self) -> str:
        return "validate_flight_form"

    def validate_destination(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[str, Any]
    ) -> Dict[str, Any]:
        city = clean_destination(str(value or ""))
        if city is None:
            dispatcher.utter_message(text="Sorry, which city would you like to fly to?")
        return {"destination": city}

    def validate_travel_date(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[str, Any]
    ) -> Dict[str, Any]:
        resolved = resolve_date(str(value or ""), today())
        if resolved is None:
            dispatcher.utter_message(
                text="Sorry, I didn't understand that date. Try \"next Friday\", \"December 3\" or \"2026-12-24\"."
            )
            return {"travel_date": None}
        if resolved < today():
            dispatcher.utter_message(text=f"{resolved.isoformat()} is in the past. Which date would you like?")
            return {"travel_date": None}
        return {"travel_date": resolved.isoformat()}

    def validate_passengers(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[str, Any]
    ) -> Dict[str, Any]:
        count = parse_passengers(str(value or ""))
        if count is None or not 1 <= count <= MAX_PASSENGERS:
            dispatcher.utter_message(text=f"I can book for 1 to {MAX_PASSENGERS} passengers. How many are travelling?")
            return {"passengers": None}
        return {"passengers": str(count)}


class ValidatePriceForm(FormValidationAction):
    def name(self) -> str:
        return "validate_price_form"

    def validate_product(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: Dict[str, Any]
    ) -> Dict[str, Any]:
        words = [w for w in str(value or "").lower().split() if w not in {"the", "a", "an", "price", "of", "for"}]
        return {"product": " ".join(words).strip(" ?.!") or None}
