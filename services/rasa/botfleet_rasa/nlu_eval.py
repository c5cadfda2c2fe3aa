"""Trains an NLU-only Rasa model and records its predictions on test texts.

The `botfleet nlu eval` CLI runs this in the Rasa venv for Rasa pipelines (stock DIET,
or any Rasa config) and computes every metric itself, so all pipelines are scored by
the same code. Output: JSON with the training time and one record per test text.

    python -m botfleet_rasa.nlu_eval --train nlu.yml --test test.yml [--oos oos.txt]
        [--config diet|PATH] --out predictions.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Rasa's stock `rasa init` NLU pipeline: what the issue calls "stock Rasa DIET".
STOCK_DIET_CONFIG = """\
recipe: default.v1
language: en
assistant_id: botfleet-eval
pipeline:
  - name: WhitespaceTokenizer
  - name: RegexFeaturizer
  - name: LexicalSyntacticFeaturizer
  - name: CountVectorsFeaturizer
  - name: CountVectorsFeaturizer
    analyzer: char_wb
    min_ngram: 1
    max_ngram: 4
  - name: DIETClassifier
    epochs: 100
    constrain_similarities: true
    random_seed: 42
  - name: EntitySynonymMapper
policies: []
"""


def read_labelled(path: str) -> list[tuple[str, str]]:
    """(text, intent) pairs of a Rasa NLU file, entity markup removed."""
    from rasa.shared.nlu.training_data.loading import load_data

    data = load_data(path)
    return [(m.get("text"), m.get("intent")) for m in data.intent_examples]


def read_oos(path: str) -> list[str]:
    """Out-of-scope texts: a Rasa NLU file (all intents) or one text per line."""
    if path.endswith((".yml", ".yaml", ".json")):
        return [text for text, _ in read_labelled(path)]
    lines = (line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]  # comments allowed


def config_path(config: str, workdir: str) -> str:
    if config == "diet":
        path = os.path.join(workdir, "config.yml")
        Path(path).write_text(STOCK_DIET_CONFIG, encoding="utf-8")
        return path
    return config


async def predict(model_path: str, texts: list[str]) -> list[dict[str, Any]]:
    from rasa.core.agent import Agent

    agent = Agent.load(model_path)
    records = []
    for text in texts:
        started = time.perf_counter()
        parsed = await agent.parse_message(text)
        seconds = time.perf_counter() - started
        intent = parsed.get("intent") or {}
        ranking = parsed.get("intent_ranking") or []
        # The score of the classifier, before any FallbackClassifier renamed the
        # intent: the CLI applies the threshold itself, the same way for every pipeline.
        top = next((r for r in ranking if r.get("name") != "nlu_fallback"), intent)
        records.append({"text": text, "predicted": top.get("name"), "confidence": float(top.get("confidence") or 0.0), "seconds": seconds})
    return records


def run(args: argparse.Namespace) -> dict[str, Any]:
    from rasa.model_training import train_nlu

    train, test = read_labelled(args.train), read_labelled(args.test)
    oos = read_oos(args.oos) if args.oos else []
    with tempfile.TemporaryDirectory() as workdir:
        started = time.perf_counter()
        model = train_nlu(config_path(args.config, workdir), args.train, workdir, fixed_model_name="eval")
        training_seconds = time.perf_counter() - started
        if not model:
            raise SystemExit("training failed")
        in_scope = asyncio.run(predict(model, [text for text, _ in test]))
        out_of_scope = asyncio.run(predict(model, oos)) if oos else []
    for record, (_, expected) in zip(in_scope, test, strict=True):
        record["expected"] = expected
    return {
        "pipeline": "diet" if args.config == "diet" else args.config,
        "train_examples": len(train),
        "training_seconds": training_seconds,
        "predictions": in_scope,
        "oos_predictions": out_of_scope,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--oos")
    parser.add_argument("--config", default="diet", help="'diet' (Rasa's stock pipeline) or a Rasa config file")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from rasa.utils.common import configure_logging_and_warnings
    from rasa.utils.log_utils import configure_structlog

    # Rasa logs every parse at debug level by default; a CI log wants only problems.
    configure_logging_and_warnings(logging.WARNING)
    configure_structlog(logging.WARNING)
    result = run(args)
    Path(args.out).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
