"""Evaluate an intent classifier on held-out examples and out-of-scope messages.

``evaluate(classifier, test_examples, oos_texts, threshold)`` returns accuracy, macro-F1,
fallback rate (share of in-scope messages whose top confidence is below the threshold),
accuracy at the threshold (correct *and* confident), the share of out-of-scope messages
below the threshold and the expected calibration error.

``botfleet-serving-eval`` trains on a deterministic split of a Rasa NLU file (in memory,
nothing is stored) and prints the evaluation as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from .nlu_data import Example, few_shot, load_nlu, stratified_split
from .train import DEFAULT_THRESHOLD, TrainConfig, expected_calibration_error, fit


class _Predictor(Protocol):
    intents: list[str]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...


def read_lines(path: str | Path) -> list[str]:
    """Non-empty lines that are not comments."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]


def evaluate(
    classifier: _Predictor,
    test_examples: Sequence[Example],
    oos_texts: Sequence[str] = (),
    threshold: float = DEFAULT_THRESHOLD,
) -> dict[str, Any]:
    from sklearn.metrics import f1_score

    intents = list(classifier.intents)
    index = {k: i for i, k in enumerate(intents)}
    unknown = sorted({e.intent for e in test_examples} - set(index))
    if unknown:
        raise ValueError(f"test intents unknown to the model: {unknown}")
    out: dict[str, Any] = {
        "threshold": threshold,
        "n_test": len(test_examples),
        "n_out_of_scope": len(oos_texts),
    }
    if test_examples:
        proba = classifier.predict_proba([e.text for e in test_examples])
        y = np.array([index[e.intent] for e in test_examples])
        pred = proba.argmax(1)
        conf = proba.max(1)
        correct = pred == y
        confident = conf >= threshold
        out.update(
            accuracy=round(float(correct.mean()), 4),
            macro_f1=round(float(f1_score(y, pred, average="macro", labels=np.unique(y))), 4),
            fallback_rate=round(float((~confident).mean()), 4),
            accuracy_at_threshold=round(float((correct & confident).mean()), 4),
            precision_above_threshold=round(float(correct[confident].mean()) if confident.any() else 0.0, 4),
            ece=round(expected_calibration_error(conf, correct), 4),
            errors=[
                {
                    "text": e.text,
                    "intent": e.intent,
                    "predicted": intents[p],
                    "confidence": round(float(c), 3),
                }
                for e, p, c, ok in zip(test_examples, pred, conf, correct, strict=False)
                if not ok
            ],
        )
    if oos_texts:
        conf_oos = classifier.predict_proba(list(oos_texts)).max(1)
        out["out_of_scope_below_threshold"] = round(float((conf_oos < threshold).mean()), 4)
        out["out_of_scope_confidence_median"] = round(float(np.median(conf_oos)), 4)
    return out


def run(
    examples: Sequence[Example],
    split: str = "stratified",
    test_fraction: float = 0.2,
    per_intent: int = 10,
    oos_texts: Sequence[str] = (),
    cfg: TrainConfig | None = None,
    split_seed: int = 0,
) -> dict[str, Any]:
    """Train on one split of ``examples`` and evaluate on the other."""
    if split == "fewshot":
        train, test = few_shot(examples, per_intent, seed=split_seed)
    else:
        train, test = stratified_split(examples, test_fraction, seed=split_seed)
    started = time.perf_counter()
    result = fit(train, cfg)
    train_seconds = round(time.perf_counter() - started, 2)
    report = evaluate(result.classifier, test, oos_texts, (cfg or TrainConfig()).threshold)
    report.update(
        split=split,
        n_train=len(train),
        n_intents=len(result.metadata["intents"]),
        temperature=result.metadata["temperature"],
        train_seconds=train_seconds,
        fine_tuning=result.metadata["fine_tuning"],
    )
    # The same test set scored without the threshold-relevant calibration, for comparison.
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="botfleet-serving-eval",
        description="Train on a deterministic split of Rasa NLU data (in memory) and evaluate on the rest.",
    )
    parser.add_argument("--nlu", required=True)
    parser.add_argument("--split", choices=["stratified", "fewshot"], default="stratified")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--per-intent", type=int, default=10, help="training examples per intent (fewshot)")
    parser.add_argument("--oos", help="a file of out-of-scope messages, one per line")
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--epochs", type=float, default=TrainConfig.epochs)
    parser.add_argument("--no-background", action="store_true")
    parser.add_argument("--errors", action="store_true", help="list the misclassified test examples")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    cfg = TrainConfig(seed=args.seed, epochs=args.epochs, background=not args.no_background)
    report = run(
        load_nlu(args.nlu),
        split=args.split,
        test_fraction=args.test_fraction,
        per_intent=args.per_intent,
        oos_texts=read_lines(args.oos) if args.oos else (),
        cfg=cfg,
        split_seed=args.split_seed,
    )
    if not args.errors:
        report.pop("errors", None)
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
