from __future__ import annotations

from pathlib import Path

import pytest
from botfleet_serving.nlu_data import (
    Example,
    data_hash,
    few_shot,
    load_nlu,
    parse_nlu_yaml,
    stratified_split,
    strip_entities,
)
from serving_support import REPO, TINY_NLU


@pytest.mark.parametrize(
    ("raw", "plain"),
    [
        ("fly to [Berlin](destination)", "fly to Berlin"),
        ("Book [2](passengers) seats to [New York](destination)", "Book 2 seats to New York"),
        ('Change the [date]{"entity": "flight_field", "value": "travel_date"}', "Change the date"),
        (
            'from [Rome]{"entity": "city", "role": "from"} to [Oslo]{"entity": "city", "role": "to"}',
            "from Rome to Oslo",
        ),
        ("[five](rating:5) stars", "five stars"),
        ("no entities here (really) [not closed", "no entities here (really) [not closed"),
    ],
)
def test_strip_entities(raw: str, plain: str) -> None:
    assert strip_entities(raw) == plain


def test_parse_ignores_synonyms_regex_lookup_and_reads_metadata_examples() -> None:
    content = (
        TINY_NLU
        + """
- lookup: city
  examples: |
    - Paris
- intent: affirm
  examples:
  - text: |
      yes please
    metadata:
      sentiment: positive
  - text: "[sure](answer) thing"
"""
    )
    examples = parse_nlu_yaml(content)
    intents = {e.intent for e in examples}
    assert intents == {"greet", "goodbye", "order_status", "book_flight", "ask_price", "affirm"}
    texts = {e.text for e in examples}
    assert "I want to fly to Berlin tomorrow" in texts
    assert "where is my order ORD-12345" in texts
    assert "yes please" in texts and "sure thing" in texts
    assert "city" not in texts and "Paris" not in texts  # synonym / lookup entries


def test_parse_rejects_bad_lines() -> None:
    with pytest.raises(ValueError):
        parse_nlu_yaml("nlu:\n- intent: x\n  examples: |\n    not a bullet\n")


def test_same_text_in_two_intents_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "nlu.yml"
    f.write_text("nlu:\n- intent: a\n  examples: |\n    - hi\n- intent: b\n  examples: |\n    - Hi\n")
    with pytest.raises(ValueError, match="labelled"):
        load_nlu(f)


def test_demo_bot_data() -> None:
    examples = load_nlu(REPO / "bots" / "demo" / "data" / "nlu.yml")
    intents = {e.intent for e in examples}
    assert len(intents) == 16
    assert not any("](" in e.text or "]{" in e.text for e in examples)
    assert Example("inform", "Berlin") in examples


def test_directory_of_files(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("nlu:\n- intent: a\n  examples: |\n    - one\n    - two\n")
    (tmp_path / "stories.yml").write_text("stories:\n- story: s\n  steps: []\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("nlu:\n- intent: b\n  examples: |\n    - three\n    - one\n")
    with pytest.raises(ValueError):  # "one" is in a and b
        load_nlu(tmp_path)
    (tmp_path / "sub" / "b.yaml").write_text("nlu:\n- intent: b\n  examples: |\n    - three\n")
    assert [e.text for e in load_nlu(tmp_path)] == ["one", "two", "three"]


def test_stratified_split_is_deterministic_and_stratified() -> None:
    examples = load_nlu(REPO / "bots" / "demo" / "data" / "nlu.yml")
    train, test = stratified_split(examples, 0.2, seed=3)
    # Same seed, shuffled input order: same split.
    train2, test2 = stratified_split(list(reversed(examples)), 0.2, seed=3)
    assert sorted(train) == sorted(train2) and sorted(test) == sorted(test2)
    # Another seed: another split of the same sizes.
    train3, test3 = stratified_split(examples, 0.2, seed=4)
    assert sorted(test3) != sorted(test) and len(test3) == len(test)
    assert set(train).isdisjoint(test) and len(train) + len(test) == len(examples)
    per_intent: dict[str, list[int]] = {}
    for name, part in (("train", train), ("test", test)):
        for e in part:
            per_intent.setdefault(e.intent, [0, 0])[name == "test"] += 1
    for intent, (n_train, n_test) in per_intent.items():
        assert n_test == round((n_train + n_test) * 0.2), intent


def test_split_keeps_one_training_example() -> None:
    examples = [Example("a", "x"), Example("b", "y"), Example("b", "z")]
    train, test = stratified_split(examples, 0.5, seed=0)
    assert Example("a", "x") in train
    assert {e.intent for e in train} == {"a", "b"}


def test_few_shot_and_hash() -> None:
    examples = load_nlu(REPO / "bots" / "demo" / "data" / "nlu.yml")
    train, test = few_shot(examples, 10, seed=0)
    counts: dict[str, int] = {}
    for e in train:
        counts[e.intent] = counts.get(e.intent, 0) + 1
    assert set(counts.values()) == {10}
    assert len(train) + len(test) == len(examples)
    assert data_hash(examples) == data_hash(list(reversed(examples)))
    assert data_hash(examples) != data_hash(examples[1:])
