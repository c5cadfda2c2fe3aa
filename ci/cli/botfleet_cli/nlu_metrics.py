"""NLU metrics from raw predictions, the same for every pipeline.

A prediction is {"expected", "predicted", "confidence", "seconds"}; out-of-scope
predictions have no "expected". A message "falls back" when its confidence is below
the threshold, as botfleet's FallbackClassifier decides at run time.
"""

from __future__ import annotations

import collections
from typing import Any, Iterable

Prediction = dict[str, Any]


def percentile(values: Iterable[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = q / 100 * (len(ordered) - 1)
    low, high = int(rank), min(int(rank) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def per_intent(predictions: list[Prediction]) -> dict[str, dict[str, float]]:
    labels = sorted({p["expected"] for p in predictions} | {p["predicted"] for p in predictions if p["predicted"]})
    report = {}
    for label in labels:
        true_positive = sum(1 for p in predictions if p["expected"] == label and p["predicted"] == label)
        predicted = sum(1 for p in predictions if p["predicted"] == label)
        support = sum(1 for p in predictions if p["expected"] == label)
        precision = true_positive / predicted if predicted else 0.0
        recall = true_positive / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        report[label] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "support": support}
    return report


def confusion_pairs(predictions: list[Prediction], top: int = 10) -> list[dict[str, Any]]:
    pairs = collections.Counter(
        (p["expected"], p["predicted"]) for p in predictions if p["predicted"] != p["expected"]
    )
    return [{"expected": e, "predicted": p, "count": n} for (e, p), n in pairs.most_common(top)]


def evaluate(predictions: list[Prediction], oos_predictions: list[Prediction], threshold: float) -> dict[str, Any]:
    """Accuracy, macro-F1, per-intent report, confusions, fallback behaviour, latency."""
    total = len(predictions)
    correct = sum(1 for p in predictions if p["predicted"] == p["expected"])
    report = per_intent(predictions)
    # Macro-F1 over the intents of the test set: an intent predicted but never expected
    # is a precision loss for the others, not a class of its own.
    expected = {p["expected"] for p in predictions}
    macro_f1 = sum(report[label]["f1"] for label in expected) / len(expected) if expected else 0.0
    in_scope_fallbacks = sum(1 for p in predictions if p["confidence"] < threshold)
    correct_kept = sum(1 for p in predictions if p["predicted"] == p["expected"] and p["confidence"] >= threshold)
    oos_fallbacks = sum(1 for p in oos_predictions if p["confidence"] < threshold)
    all_fallbacks = in_scope_fallbacks + oos_fallbacks
    latencies = [p["seconds"] for p in predictions + oos_predictions]
    result: dict[str, Any] = {
        "examples": total,
        "accuracy": round(correct / total, 4) if total else 0.0,
        "macro_f1": round(macro_f1, 4),
        "threshold": threshold,
        # Of in-scope messages: how many fall back, and how many are answered correctly
        # once falling back counts as not answering.
        "fallback_rate": round(in_scope_fallbacks / total, 4) if total else 0.0,
        "accuracy_with_fallback": round(correct_kept / total, 4) if total else 0.0,
        "per_intent": report,
        "top_confusions": confusion_pairs(predictions),
        "latency_ms": {
            "p50": round(1000 * percentile(latencies, 50), 2),
            "p99": round(1000 * percentile(latencies, 99), 2),
        },
        # One parse at a time, in process: the classifier's own speed.
        "parses_per_s": round(len(latencies) / sum(latencies), 1) if sum(latencies) else 0.0,
    }
    if oos_predictions:
        # The fallback as a detector of out-of-scope messages.
        result["out_of_scope"] = {
            "examples": len(oos_predictions),
            "fallback_recall": round(oos_fallbacks / len(oos_predictions), 4),
            "fallback_precision": round(oos_fallbacks / all_fallbacks, 4) if all_fallbacks else 0.0,
        }
    return result


def failed_gates(metrics: dict[str, Any], gates: dict[str, float | None]) -> list[str]:
    """Gates not met, as readable sentences; empty when every given gate passes."""
    failures = []
    checks = {
        "min_accuracy": ("accuracy", metrics["accuracy"]),
        "min_macro_f1": ("macro-F1", metrics["macro_f1"]),
        "min_oos_recall": ("out-of-scope fallback recall", (metrics.get("out_of_scope") or {}).get("fallback_recall")),
    }
    for gate, minimum in gates.items():
        if minimum is None:
            continue
        name, value = checks[gate]
        if value is None or value < minimum:
            failures.append(f"{name} {value} is below the required {minimum}")
    return failures
