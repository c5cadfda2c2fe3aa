"""The NLU metrics every pipeline is scored with, on hand-checked predictions."""

import pytest
from botfleet_cli.nlu_metrics import evaluate, failed_gates, percentile


def p(expected, predicted, confidence, seconds=0.01):
    return {"expected": expected, "predicted": predicted, "confidence": confidence, "seconds": seconds}


PREDICTIONS = [
    p("greet", "greet", 0.9),
    p("greet", "greet", 0.5),  # right, but below the threshold
    p("greet", "bye", 0.7),
    p("bye", "bye", 0.95),
    p("bye", "greet", 0.4),
]
OOS = [{"predicted": "greet", "confidence": 0.3, "seconds": 0.02}, {"predicted": "bye", "confidence": 0.8, "seconds": 0.03}]


def test_accuracy_f1_and_confusions():
    metrics = evaluate(PREDICTIONS, [], 0.65)
    assert metrics["accuracy"] == 0.6
    # greet: precision 2/3, recall 2/3; bye: precision 1/2, recall 1/2.
    assert metrics["per_intent"]["greet"]["f1"] == pytest.approx(0.6667, abs=1e-4)
    assert metrics["per_intent"]["bye"]["f1"] == 0.5
    assert metrics["macro_f1"] == pytest.approx((0.6667 + 0.5) / 2, abs=1e-4)
    assert {"expected": "greet", "predicted": "bye", "count": 1} in metrics["top_confusions"]
    assert "out_of_scope" not in metrics


def test_fallback_rate_and_out_of_scope_detection():
    metrics = evaluate(PREDICTIONS, OOS, 0.65)
    assert metrics["fallback_rate"] == 0.4  # 0.5 and 0.4 fall back
    assert metrics["accuracy_with_fallback"] == 0.4  # only 0.9 and 0.95 are right and kept
    # One of two out-of-scope messages falls back; fallbacks overall: 2 in-scope + 1.
    assert metrics["out_of_scope"] == {"examples": 2, "fallback_recall": 0.5, "fallback_precision": pytest.approx(0.3333, abs=1e-4)}


def test_latency_percentiles():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 99) == 5
    assert percentile([], 50) == 0.0
    assert evaluate(PREDICTIONS, OOS, 0.65)["latency_ms"]["p99"] == pytest.approx(29.4, abs=0.01)


def test_gates():
    metrics = evaluate(PREDICTIONS, OOS, 0.65)
    assert failed_gates(metrics, {"min_accuracy": 0.6, "min_macro_f1": None, "min_oos_recall": None}) == []
    failures = failed_gates(metrics, {"min_accuracy": 0.9, "min_macro_f1": 0.5, "min_oos_recall": 0.85})
    assert failures == ["accuracy 0.6 is below the required 0.9", "out-of-scope fallback recall 0.5 is below the required 0.85"]
    no_oos = evaluate(PREDICTIONS, [], 0.65)
    assert failed_gates(no_oos, {"min_oos_recall": 0.1}) == ["out-of-scope fallback recall None is below the required 0.1"]
