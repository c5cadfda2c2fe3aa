"""Deterministic train/test splits of Rasa NLU files, keeping each example's markup.

Only `intent` blocks with `examples` are split; synonyms, regexes and lookup tables
go to the training file whole, because they are resources, not examples.
"""

from __future__ import annotations

import random
from typing import Any

import yaml


class LiteralText(str):
    """Dumped as a YAML block (`|`), as Rasa's own files write examples."""


def _literal(dumper: yaml.SafeDumper, text: LiteralText) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|")


yaml.SafeDumper.add_representer(LiteralText, _literal)


def examples_of(block: dict[str, Any]) -> list[str]:
    return [line.strip()[2:].strip() for line in str(block.get("examples") or "").splitlines() if line.strip().startswith("- ")]


def split(document: dict[str, Any], seed: int, test_fraction: float | None, train_per_intent: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    rng = random.Random(seed)
    train: list[dict[str, Any]] = []
    test: list[dict[str, Any]] = []
    for block in document.get("nlu") or []:
        if "intent" not in block:
            train.append(block)
            continue
        examples = examples_of(block)
        rng.shuffle(examples)
        if train_per_intent is not None:
            cut = min(train_per_intent, len(examples) - 1)
        else:
            cut = len(examples) - max(1, round(len(examples) * (test_fraction or 0.2)))
        cut = max(cut, 1)  # every intent keeps at least one training example
        for target, chosen in ((train, examples[:cut]), (test, examples[cut:])):
            if chosen:
                target.append({"intent": block["intent"], "examples": LiteralText("".join(f"- {e}\n" for e in chosen))})
    version = document.get("version", "3.1")
    return {"version": version, "nlu": train}, {"version": version, "nlu": test}


def dump(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=1000)
