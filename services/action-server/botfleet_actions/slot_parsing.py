"""Pure parsers that turn what users type into slot values."""

from __future__ import annotations

import re
from datetime import date, timedelta

WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
MONTHS = [
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
]
NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "a": 1, "an": 1, "single": 1, "couple": 2,
    "just me": 1, "only me": 1, "myself": 1, "me": 1,
}
_UNIT_DAYS = {"day": 1, "week": 7}


def _number(token: str) -> int | None:
    token = token.strip().lower()
    if token.isdigit():
        return int(token)
    return NUMBER_WORDS.get(token)


def resolve_date(text: str, today: date) -> date | None:
    """Resolves what a user says about a travel date to a calendar date.

    "next <weekday>" and "<weekday>" mean the first such day after today; "this
    <weekday>" allows today. Dates without a year take the next occurrence.
    """
    phrase = re.sub(r"[^\w\s/-]", " ", text.lower())
    phrase = re.sub(r"\b(on|for|the|of|please|at)\b", " ", phrase)
    phrase = re.sub(r"\s+", " ", phrase).strip()
    if not phrase:
        return None
    if match := re.search(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b", phrase):
        try:
            return date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            return None
    simple = {"today": 0, "tonight": 0, "tomorrow": 1, "day after tomorrow": 2}
    for words, days in sorted(simple.items(), key=lambda kv: -len(kv[0])):
        if re.search(rf"\b{words}\b", phrase):
            return today + timedelta(days=days)
    if match := re.search(r"\bin (\w+) (day|week)s?\b", phrase):
        count = _number(match[1])
        if count is not None:
            return today + timedelta(days=count * _UNIT_DAYS[match[2]])
    if re.search(r"\bnext week\b", phrase):
        return today + timedelta(days=7 - today.weekday())
    for index, weekday in enumerate(WEEKDAYS):
        if match := re.search(rf"\b(this |next )?{weekday}\b", phrase):
            ahead = (index - today.weekday()) % 7
            if ahead == 0 and match[1] != "this ":
                ahead = 7
            return today + timedelta(days=ahead)
    month_pattern = "|".join(MONTHS + [m[:3] for m in MONTHS])
    day_first = re.search(rf"\b(\d{{1,2}})(?:st|nd|rd|th)? ({month_pattern})\b", phrase)
    month_first = re.search(rf"\b({month_pattern}) (\d{{1,2}})(?:st|nd|rd|th)?\b", phrase)
    if day_first or month_first:
        day_text, month_text = (
            (day_first[1], day_first[2]) if day_first else (month_first[2], month_first[1])  # type: ignore[index]
        )
        month = [m[:3] for m in MONTHS].index(month_text[:3]) + 1
        for year in (today.year, today.year + 1):
            try:
                candidate = date(year, month, int(day_text))
            except ValueError:
                return None
            if candidate >= today:
                return candidate
    return None


def parse_passengers(text: str) -> int | None:
    phrase = text.lower().strip()
    if match := re.search(r"\b(\d+)\b", phrase):
        return int(match[1])
    for words in sorted(NUMBER_WORDS, key=len, reverse=True):
        if re.search(rf"\b{words}\b", phrase):
            return NUMBER_WORDS[words]
    return None


def clean_destination(text: str) -> str | None:
    """A city name in title case, without the filler users put around it."""
    phrase = re.sub(r"[^\w\s'-]", " ", text.strip())
    phrase = re.sub(r"^(i want to go |i'd like to go |fly |flying |going )?(to |into )?", "", phrase, flags=re.I)
    phrase = re.sub(r"\s+", " ", phrase).strip()
    if not phrase or any(char.isdigit() for char in phrase) or len(phrase) > 60:
        return None
    return " ".join(word.capitalize() for word in phrase.split())


def title_address(text: str) -> str:
    """Restores conventional capitalisation to an address the preprocessor lowercased."""
    return " ".join(
        word.upper() if len(word) <= 2 and word.isalpha() and word not in {"st", "rd", "ln", "dr"} else word.capitalize()
        for word in text.split()
    )


def normalize_order_id(text: str) -> str | None:
    match = re.search(r"\bord-?(\d{5})\b", text, flags=re.I)
    return f"ORD-{match[1]}" if match else None
