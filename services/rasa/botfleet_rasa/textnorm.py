"""Offset-preserving text normalisation.

Every step is a list of edits (replace text[start:end] with a string). Applying edits
also yields a map from old to new character offsets, so entity annotations in training
data stay aligned after NFKC, emoji expansion, redaction, lowercasing and whitespace
folding change the text's length.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import emoji

from botfleet_common import pii


@dataclass(frozen=True)
class Edit:
    start: int
    end: int
    replacement: str


@dataclass
class Normalized:
    """The normalised text, where each old offset moved to, and what was redacted."""

    text: str
    offsets: list[int]
    redactions: dict[str, int] = field(default_factory=dict)

    def map_span(self, start: int, end: int) -> tuple[int, int]:
        return self.offsets[start], self.offsets[end]


def apply_edits(text: str, edits: Iterable[Edit]) -> tuple[str, list[int]]:
    """Applies non-overlapping edits; returns the new text and an old→new offset map."""
    ordered = sorted(edits, key=lambda e: e.start)
    pieces: list[str] = []
    offsets = [0] * (len(text) + 1)
    cursor = 0
    new_length = 0
    for edit in ordered:
        if edit.start < cursor:
            raise ValueError(f"overlapping edit at {edit.start}")
        for index in range(cursor, edit.start):
            offsets[index] = new_length + (index - cursor)
        pieces.append(text[cursor : edit.start])
        new_length += edit.start - cursor
        # Offsets strictly inside a replaced span collapse onto its start; the end
        # offset lands after the replacement.
        for index in range(edit.start, edit.end):
            offsets[index] = new_length
        pieces.append(edit.replacement)
        new_length += len(edit.replacement)
        cursor = edit.end
    for index in range(cursor, len(text) + 1):
        offsets[index] = new_length + (index - cursor)
    pieces.append(text[cursor:])
    return "".join(pieces), offsets


def _nfkc_edits(text: str) -> list[Edit]:
    edits: list[Edit] = []
    index = 0
    while index < len(text):
        end = index + 1
        while end < len(text) and unicodedata.combining(text[end]):
            end += 1
        cluster = text[index:end]
        normalized = unicodedata.normalize("NFKC", cluster)
        if normalized != cluster:
            edits.append(Edit(index, end, normalized))
        index = end
    return edits


def _emoji_edits(text: str) -> list[Edit]:
    edits = []
    for found in emoji.emoji_list(text):
        name = emoji.demojize(found["emoji"], delimiters=("", "")).replace("_", " ")
        edits.append(Edit(found["match_start"], found["match_end"], f" {name} "))
    return edits


def _pii_edits(text: str, kinds: Sequence[str]) -> list[Edit]:
    return [
        Edit(f.start, f.end, pii.PLACEHOLDERS[f.kind]) for f in pii.find_pii(text, kinds)
    ]


def _lowercase_edits(text: str) -> list[Edit]:
    return [Edit(i, i + 1, c.lower()) for i, c in enumerate(text) if c.lower() != c]


_WHITESPACE = re.compile(r"\s+")


def _whitespace_edits(text: str) -> list[Edit]:
    edits = []
    for match in _WHITESPACE.finditer(text):
        at_edge = match.start() == 0 or match.end() == len(text)
        replacement = "" if at_edge else " "
        if match.group() != replacement:
            edits.append(Edit(match.start(), match.end(), replacement))
    return edits


def normalize(
    text: str,
    *,
    nfkc: bool = True,
    emoji_to_text: bool = True,
    redact_kinds: Sequence[str] = pii.DEFAULT_KINDS,
    lowercase: bool = True,
    fold_whitespace: bool = True,
) -> Normalized:
    """Runs the enabled steps in order and composes their offset maps."""
    offsets = list(range(len(text) + 1))
    redactions: dict[str, int] = {}

    def step(edits: list[Edit]) -> None:
        nonlocal text, offsets
        if not edits:
            return
        text, step_offsets = apply_edits(text, edits)
        offsets = [step_offsets[o] for o in offsets]

    if nfkc:
        step(_nfkc_edits(text))
    if emoji_to_text:
        step(_emoji_edits(text))
    if redact_kinds:
        for finding in pii.find_pii(text, redact_kinds):
            redactions[finding.kind] = redactions.get(finding.kind, 0) + 1
        step(_pii_edits(text, redact_kinds))
    if lowercase:
        step(_lowercase_edits(text))
    if fold_whitespace:
        step(_whitespace_edits(text))
    return Normalized(text=text, offsets=offsets, redactions=redactions)
