from datetime import date

import pytest

from botfleet_actions.slot_parsing import (
    clean_destination,
    normalize_order_id,
    parse_passengers,
    resolve_date,
    title_address,
)

SUNDAY = date(2026, 11, 22)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("next friday", date(2026, 11, 27)),
        ("on Friday", date(2026, 11, 27)),
        ("sunday", date(2026, 11, 29)),
        ("this sunday", date(2026, 11, 22)),
        ("tomorrow", date(2026, 11, 23)),
        ("the day after tomorrow", date(2026, 11, 24)),
        ("in two weeks", date(2026, 12, 6)),
        ("in 3 days", date(2026, 11, 25)),
        ("2026-12-24", date(2026, 12, 24)),
        ("December 3", date(2026, 12, 3)),
        ("3rd of may", date(2027, 5, 3)),
        ("next week", date(2026, 11, 23)),
    ],
)
def test_relative_and_absolute_dates_resolve(text, expected):
    assert resolve_date(text, SUNDAY) == expected


@pytest.mark.parametrize("text", ["banana", "", "2026-02-30", "February 30"])
def test_unparseable_dates_are_none(text):
    assert resolve_date(text, SUNDAY) is None


@pytest.mark.parametrize(("text", "count"), [("2", 2), ("three passengers", 3), ("just me", 1), ("a couple", 2), ("12 people", 12)])
def test_passenger_counts(text, count):
    assert parse_passengers(text) == count


def test_cleaning_user_text():
    assert clean_destination("to new york") == "New York"
    assert clean_destination("flight 123") is None
    assert title_address("456 oak ave, apt 10") == "456 Oak Ave, Apt 10"
    assert normalize_order_id("where is ord10042?") == "ORD-10042"
    assert normalize_order_id("no id here") is None
