"""Trains botfleet's NLU on one Rasa NLU file and records its predictions on another.

The runner behind `botfleet nlu eval --pipeline botfleet`: the same output shape as
botfleet_rasa.nlu_eval, so one scorer computes the metrics for every pipeline. Nothing
is written to the model store.

    python -m botfleet_serving.nlu_eval --train nlu.yml --test test.yml [--oos oos.txt]
        --out predictions.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from botfleet_serving.nlu_data import load_nlu


def read_oos(path: str) -> list[str]:
    """One text per line (# comments allowed), or a Rasa NLU file."""
    if path.endswith((".yml", ".yaml")):
        return [example.text for example in load_nlu(path)]
    lines = (line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def predict(classifier: Any, texts: Sequence[str]) -> list[dict[str, Any]]:
    """One text at a time, as Rasa parses messages, so latencies compare with DIET's."""
    records = []
    for text in texts:
        started = time.perf_counter()
        ranking = classifier.predict([text])[0]
        seconds = time.perf_counter() - started
        intent = ranking["intent"]
        records.append(
            {
                "text": text,
                "predicted": intent["name"],
                "confidence": float(intent["confidence"]),
                "seconds": seconds,
            }
        )
    return records


def run(train_path: str, test_path: str, oos_path: str | None) -> dict[str, Any]:
    from botfleet_serving.train import fit

    train, test = load_nlu(train_path), load_nlu(test_path)
    started = time.perf_counter()
    result = fit(train)
    training_seconds = time.perf_counter() - started
    in_scope = predict(result.classifier, [e.text for e in test])
    for record, example in zip(in_scope, test, strict=True):
        record["expected"] = example.intent
    return {
        "pipeline": "botfleet",
        "train_examples": len(train),
        "training_seconds": training_seconds,
        "predictions": in_scope,
        "oos_predictions": predict(result.classifier, read_oos(oos_path)) if oos_path else [],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--oos")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    Path(args.out).write_text(json.dumps(run(args.train, args.test, args.oos)), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
