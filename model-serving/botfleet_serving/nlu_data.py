"""Rasa NLU training data: read intents and their examples, strip entity markup, split.

Only what intent classification needs is read: ``- intent: NAME`` blocks with their
``examples``. ``synonym``, ``regex`` and ``lookup`` blocks are ignored. Entity
annotations become plain text, so ``fly to [Berlin](destination)`` and
``[Berlin]{"entity": "city", "role": "to"}`` both read as their surface text.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml  # type: ignore[import-untyped]

# [surface text](entity), [surface text](entity:value), [surface text]{"entity": ...}
# The surface text may not contain "]"; a JSON annotation may not contain "}" (Rasa's own rule).
_ENTITY_RE = re.compile(r"\[(?P<text>[^\]]*)\](?:\((?P<short>[^)]*)\)|\{(?P<json>[^}]*)\})")
_BULLET_RE = re.compile(r"^\s*-\s?(?P<text>.*)$")


@dataclass(frozen=True, order=True)
class Example:
    """One training example: the plain text (entity markup removed) and its intent."""

    intent: str
    text: str


def strip_entities(text: str) -> str:
    """``Book [2](passengers) seats to [Paris]{"entity": "city"}`` -> ``Book 2 seats to Paris``."""
    return _ENTITY_RE.sub(lambda m: m.group("text"), text)


def _examples_from_block(block: Any) -> list[str]:
    """The texts of one intent's ``examples`` value: a ``|`` bullet list or a list of {text: ...}."""
    texts: list[str] = []
    if isinstance(block, str):
        for line in block.splitlines():
            if not line.strip():
                continue
            m = _BULLET_RE.match(line)
            if m is None:
                raise ValueError(f"example line does not start with '- ': {line!r}")
            texts.append(m.group("text"))
    elif isinstance(block, list):
        # Rasa 3 also accepts examples with metadata: a list of {"text": "...", "metadata": {...}}.
        for item in block:
            if isinstance(item, dict) and "text" in item:
                texts.append(str(item["text"]).strip())
            elif isinstance(item, str):
                texts.append(item)
            else:
                raise ValueError(f"unsupported example entry: {item!r}")
    elif block is not None:
        raise ValueError(f"unsupported examples value: {type(block).__name__}")
    return texts


def parse_nlu_yaml(content: str) -> list[Example]:
    """Intent examples from the text of one Rasa 3 NLU YAML file, in file order."""
    doc = yaml.safe_load(content) or {}
    if not isinstance(doc, dict):
        raise ValueError("an NLU file must be a YAML mapping with an 'nlu' key")
    entries = doc.get("nlu") or []
    if not isinstance(entries, list):
        raise ValueError("'nlu' must be a list")
    examples: list[Example] = []
    for entry in entries:
        if not isinstance(entry, dict) or "intent" not in entry:
            continue  # synonym, regex, lookup: not used for intent classification
        intent = str(entry["intent"]).strip()
        if not intent:
            raise ValueError("an intent block has an empty name")
        for raw in _examples_from_block(entry.get("examples")):
            text = " ".join(strip_entities(raw).split())
            if text:
                examples.append(Example(intent=intent, text=text))
    return examples


def load_nlu(path: str | Path) -> list[Example]:
    """Read one NLU file, or every ``*.yml``/``*.yaml`` file below a directory (sorted by path).

    Duplicates (same intent and text) are kept once. The same text under two intents is an
    error, because no classifier can learn it.
    """
    p = Path(path)
    files = sorted(q for q in p.rglob("*") if q.suffix in {".yml", ".yaml"}) if p.is_dir() else [p]
    examples: list[Example] = []
    for f in files:
        content = f.read_text(encoding="utf-8")
        if p.is_dir() and "nlu:" not in content:
            continue  # stories, rules, domain files in a data directory
        examples.extend(parse_nlu_yaml(content))
    return dedupe(examples)


def dedupe(examples: Iterable[Example]) -> list[Example]:
    """Drop repeated (intent, text) pairs; refuse a text labelled with two intents."""
    seen: dict[str, str] = {}
    out: list[Example] = []
    for ex in examples:
        key = ex.text.lower()
        if key in seen:
            if seen[key] != ex.intent:
                raise ValueError(f"example {ex.text!r} is labelled {seen[key]!r} and {ex.intent!r}")
            continue
        seen[key] = ex.intent
        out.append(ex)
    return out


def by_intent(examples: Iterable[Example]) -> dict[str, list[str]]:
    """Texts grouped by intent; intents sorted by name, texts in input order."""
    groups: dict[str, list[str]] = defaultdict(list)
    for ex in examples:
        groups[ex.intent].append(ex.text)
    return {k: groups[k] for k in sorted(groups)}


def _rng(seed: int, intent: str) -> random.Random:
    # Seeded per intent so that adding an intent does not reshuffle the others.
    digest = hashlib.sha256(f"{seed}:{intent}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def stratified_split(
    examples: Sequence[Example], test_fraction: float = 0.2, seed: int = 0, min_train: int = 1
) -> tuple[list[Example], list[Example]]:
    """Split every intent into train and test with the same fraction, deterministically.

    The result depends only on the set of examples, the fraction and the seed (not on their
    order). Each intent keeps at least ``min_train`` training examples; an intent with a
    single example goes to train only.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError("test_fraction must be in [0, 1)")
    train: list[Example] = []
    test: list[Example] = []
    for intent, texts in by_intent(examples).items():
        ordered = sorted(set(texts))
        _rng(seed, intent).shuffle(ordered)
        n_test = min(int(round(len(ordered) * test_fraction)), max(0, len(ordered) - min_train))
        test.extend(Example(intent, t) for t in ordered[:n_test])
        train.extend(Example(intent, t) for t in ordered[n_test:])
    return train, test


def few_shot(
    examples: Sequence[Example], per_intent: int, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """``per_intent`` examples of every intent for training, the rest for testing."""
    train: list[Example] = []
    test: list[Example] = []
    for intent, texts in by_intent(examples).items():
        ordered = sorted(set(texts))
        _rng(seed, intent).shuffle(ordered)
        train.extend(Example(intent, t) for t in ordered[:per_intent])
        test.extend(Example(intent, t) for t in ordered[per_intent:])
    return train, test


def data_hash(examples: Iterable[Example]) -> str:
    """sha256 of the sorted (intent, text) pairs: the identity of a training set."""
    h = hashlib.sha256()
    for ex in sorted(set(examples)):
        h.update(ex.intent.encode())
        h.update(b"\x00")
        h.update(ex.text.encode())
        h.update(b"\x01")
    return h.hexdigest()
