"""PII detection and redaction.

Redaction runs at every place text leaves a process (tracker store, event broker, log
formatter), so the patterns live here once and every sink uses the same ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

CARD_PLACEHOLDER = "[CARD]"
EMAIL_PLACEHOLDER = "[EMAIL]"
PHONE_PLACEHOLDER = "[PHONE]"

# 13-19 digits, optionally grouped by single spaces or dashes; Luhn decides.
_CARD_CANDIDATE = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])")
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# International numbers need a leading +; national ones need a recognisable grouping
# so that ISO dates (2026-12-04), order ids (ORD-10042) and prices are left alone.
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}"  # +49 30 1234567, +1 (415) 555-0100
    r"|\(\d{3}\)\s?\d{3}[ .-]\d{4}"  # (415) 555-0100
    r"|\d{3}[.-]\d{3}[.-]\d{4}"  # 415-555-0100, 415.555.0100
    r"|\d{3} \d{3} \d{4}"  # 415 555 0100
    r"|0\d{2,4}[ -]\d{3,4}[ -]\d{3,4}"  # 020 7946 0958
    r")(?![\w])"
)


@dataclass(frozen=True)
class Finding:
    """One PII match: what kind it is and where it stands in the text."""

    kind: str
    start: int
    end: int


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn checksum used by payment cards."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _digit_count(text: str) -> int:
    return sum(char.isdigit() for char in text)


def _card_findings(text: str) -> Iterator[Finding]:
    for match in _CARD_CANDIDATE.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            yield Finding("card", match.start(), match.end())


def _pattern_findings(kind: str, pattern: re.Pattern[str], text: str) -> Iterator[Finding]:
    for match in pattern.finditer(text):
        if kind == "phone" and not 7 <= _digit_count(match.group()) <= 15:
            continue
        yield Finding(kind, match.start(), match.end())


FINDERS: dict[str, Callable[[str], Iterable[Finding]]] = {
    "card": _card_findings,
    "email": lambda text: _pattern_findings("email", _EMAIL, text),
    "phone": lambda text: _pattern_findings("phone", _PHONE, text),
}
PLACEHOLDERS = {"card": CARD_PLACEHOLDER, "email": EMAIL_PLACEHOLDER, "phone": PHONE_PLACEHOLDER}
DEFAULT_KINDS: tuple[str, ...] = ("card", "email", "phone")


def find_pii(text: str, kinds: Iterable[str] = DEFAULT_KINDS) -> list[Finding]:
    """Non-overlapping findings, earlier kinds winning (cards before phones)."""
    findings: list[Finding] = []
    for kind in kinds:
        if kind not in FINDERS:
            raise ValueError(f"unknown PII kind {kind!r}; known: {sorted(FINDERS)}")
        for finding in FINDERS[kind](text):
            if all(finding.end <= f.start or finding.start >= f.end for f in findings):
                findings.append(finding)
    return sorted(findings, key=lambda f: f.start)


def redact(text: str, kinds: Iterable[str] = DEFAULT_KINDS) -> str:
    """The text with every PII finding replaced by its placeholder."""
    if not text:
        return text
    parts: list[str] = []
    cursor = 0
    for finding in find_pii(text, kinds):
        parts.append(text[cursor : finding.start])
        parts.append(PLACEHOLDERS[finding.kind])
        cursor = finding.end
    parts.append(text[cursor:])
    return "".join(parts)


def redact_value(value: Any, kinds: Iterable[str] = DEFAULT_KINDS) -> Any:
    """Redacts every string inside nested dicts, lists and tuples."""
    kinds = tuple(kinds)
    if isinstance(value, str):
        return redact(value, kinds)
    if isinstance(value, dict):
        return {key: redact_value(item, kinds) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(item, kinds) for item in value)
    return value
