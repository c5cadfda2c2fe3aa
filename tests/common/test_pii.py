import pytest

from botfleet_common.pii import find_pii, luhn_valid, redact, redact_value


@pytest.mark.parametrize(
    "card",
    ["4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "5500 0000 0000 0004", "378282246310005"],
)
def test_luhn_valid_cards_are_redacted(card):
    assert redact(f"my card is {card}, thanks") == "my card is [CARD], thanks"


def test_digit_runs_that_fail_luhn_are_kept():
    assert not luhn_valid("4111111111111112")
    assert redact("ref 4111111111111112") == "ref 4111111111111112"


@pytest.mark.parametrize("email", ["john.doe@example.com", "A.B+tag@sub.example.co.uk"])
def test_emails_are_redacted(email):
    assert redact(f"mail {email} now") == "mail [EMAIL] now"


@pytest.mark.parametrize(
    "phone", ["+1 (415) 555-0100", "+49 30 1234567", "(415) 555-0100", "415-555-0100", "415.555.0100", "020 7946 0958"]
)
def test_phones_are_redacted(phone):
    assert redact(f"call {phone} please") == "call [PHONE] please"


@pytest.mark.parametrize(
    "text",
    [
        "fly on 2026-12-04",
        "order ORD-10042",
        "it costs 1,299.99 USD",
        "Ship to 456 Oak Ave, Apt 10",
        "for 2 passengers on December 3",
    ],
)
def test_ordinary_chat_is_not_redacted(text):
    assert find_pii(text) == []


def test_kinds_can_be_selected():
    text = "a@b.io 4111 1111 1111 1111"
    assert redact(text, kinds=("email",)) == "[EMAIL] 4111 1111 1111 1111"
    with pytest.raises(ValueError, match="unknown PII kind"):
        redact(text, kinds=("ssn",))


def test_redact_value_walks_nested_structures():
    event = {"text": "card 4111111111111111", "parse_data": {"entities": [{"value": "x@y.com"}]}, "n": 3}
    assert redact_value(event) == {"text": "card [CARD]", "parse_data": {"entities": [{"value": "[EMAIL]"}]}, "n": 3}
