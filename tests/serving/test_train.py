from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from botfleet_serving.classifier import BACKGROUND_LABEL, load_classifier, softmax
from botfleet_serving.evaluate import evaluate
from botfleet_serving.nlu_data import Example, data_hash, load_nlu
from botfleet_serving.train import TrainConfig, fit, fit_temperature, make_pairs, read_metadata
from serving_support import FAST


def test_stored_model_has_tag_and_metadata(trained_tag: str, bentoml_home: str, tiny_nlu_file: Path) -> None:
    import bentoml

    model = bentoml.models.get(trained_tag)
    assert str(model.tag) == trained_tag
    assert Path(model.path).is_relative_to(bentoml_home)  # the store of BENTOML_HOME
    md = read_metadata(trained_tag)
    assert md["intents"] == ["ask_price", "book_flight", "goodbye", "greet", "order_status"]
    assert md["training_data_hash"] == data_hash(load_nlu(tiny_nlu_file))
    assert 0.2 <= md["temperature"] <= 5.0
    assert md["fine_tuning"]["steps"] == 6
    heldout = md["metrics"]["heldout_calibration_split"]
    assert heldout["n_in_scope"] == 5 and 0.0 <= heldout["accuracy"] <= 1.0
    assert model.info.labels["task"] == "intent-classification"
    # latest resolves to it
    assert str(bentoml.models.get("test-nlu:latest").tag) == trained_tag


def test_load_classifier_predicts_rankings(trained_tag: str) -> None:
    clf = load_classifier(trained_tag)
    assert clf.info["tag"] == trained_tag
    out = clf.predict(
        ["hello there, good morning", "I want to book a flight to Madrid", "where is my parcel"]
    )
    assert [r["intent"]["name"] for r in out] == ["greet", "book_flight", "order_status"]
    for r in out:
        ranking = r["intent_ranking"]
        assert len(ranking) == 5  # all intents (fewer than 10), never the background class
        assert BACKGROUND_LABEL not in {s["name"] for s in ranking}
        confs = [s["confidence"] for s in ranking]
        assert confs == sorted(confs, reverse=True)
        assert 0.0 < sum(confs) <= 1.0 + 1e-5
        assert r["intent"] == ranking[0]
    assert clf.predict([]) == []


def test_training_is_deterministic(tiny_nlu_file: Path) -> None:
    examples = load_nlu(tiny_nlu_file)
    cfg = TrainConfig(seed=11, **FAST)
    a = fit(examples, cfg)
    b = fit(examples, cfg)
    np.testing.assert_allclose(a.classifier.weight, b.classifier.weight, atol=1e-5)
    assert a.metadata["temperature"] == b.metadata["temperature"]
    texts = ["hi", "bye bye", "price of a phone"]
    np.testing.assert_allclose(
        a.classifier.predict_proba(texts), b.classifier.predict_proba(texts), atol=1e-5
    )
    # The fine-tuning moved the encoder: another seed gives other weights.
    c = fit(examples, TrainConfig(seed=12, **FAST))
    assert not np.allclose(a.classifier.weight, c.classifier.weight, atol=1e-5)


def test_evaluate_reports_accuracy_f1_fallback(trained_tag: str) -> None:
    clf = load_classifier(trained_tag)
    test = [
        Example("greet", "hey there"),
        Example("goodbye", "bye, see you"),
        Example("ask_price", "how much does the laptop cost"),
        Example("book_flight", "I need a plane ticket to Lisbon"),
    ]
    report = evaluate(clf, test, oos_texts=["What is the capital of Peru?"], threshold=0.65)
    assert report["n_test"] == 4
    assert report["accuracy"] >= 0.75
    assert 0.0 <= report["macro_f1"] <= 1.0 and 0.0 <= report["fallback_rate"] <= 1.0
    assert "out_of_scope_below_threshold" in report
    with pytest.raises(ValueError, match="unknown"):
        evaluate(clf, [Example("weather", "is it raining")])


def test_temperature_fit_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 6)) * 3
    true_t = 2.5
    y = np.array([rng.choice(6, p=p) for p in softmax(logits, true_t)])
    assert abs(fit_temperature(logits, y) - true_t) < 0.25
    # Perfectly separable data: the likelihood wants T -> 0; the bound stops it.
    y_sep = logits.argmax(1)
    assert fit_temperature(logits * 10, y_sep) == pytest.approx(0.2, abs=1e-3)


def test_pairs_are_balanced_and_labelled() -> None:
    import random

    groups = {"a": ["a1", "a2", "a3"], "b": ["b1", "b2"], "c": ["c1", "c2"]}
    pairs = make_pairs(groups, ["noise"], 400, random.Random(0), 0.3)
    assert len(pairs) == 400
    label_of = {t: k for k, v in groups.items() for t in v}
    for x, y, lab in pairs:
        if lab == 1.0:
            assert label_of[x] == label_of[y] and x != y
        else:
            assert y == "noise" or label_of[x] != label_of[y]
    positives = sum(p[2] for p in pairs)
    assert 150 <= positives <= 250
    assert 0 < sum(1 for p in pairs if p[1] == "noise") < 200


def test_cli_refuses_existing_tag(trained_tag: str, tiny_nlu_file: Path) -> None:
    from botfleet_serving.train import main

    with pytest.raises(Exception, match="exist"):
        main(["--nlu", str(tiny_nlu_file), "--tag", trained_tag, "--max-steps", "1", "--epochs", "0.1"])


def test_cli_prints_summary(tiny_nlu_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from botfleet_serving.train import main

    assert (
        main(["--nlu", str(tiny_nlu_file), "--tag", "test-nlu:frozen", "--epochs", "0", "--no-background"])
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["tag"] == "test-nlu:frozen"
    assert summary["fine_tuning"]["steps"] == 0
    assert summary["intents"] == 5


def test_background_sentences_close_to_examples_are_dropped() -> None:
    from botfleet_serving.classifier import base_model_path, load_encoder
    from botfleet_serving.train import filter_background, load_background

    background = load_background()
    assert len(background) > 100
    encoder = load_encoder(base_model_path())
    # A bot whose intents include two of the background's topics.
    examples = ["who sang bohemian rhapsody", "why do cats purr?"]
    kept = filter_background(encoder, background, examples, 0.8)
    assert "Who sang Bohemian Rhapsody?" not in kept and "Why do cats purr?" not in kept
    assert len(background) - len(kept) < 6  # and not much else
    assert filter_background(encoder, background, examples, -1.0) == []
