#!/usr/bin/env python3
"""Trains a bot only when its inputs changed.

The model is named after a content hash of everything that shapes it: the bot's
config, domain and data, botfleet's Rasa components, and the Rasa version. An
existing model with that name is reused, so `make up` does not retrain.

Usage: ci/train.py [BOT_DIR] [--config config.yml] [--force]   (prints the model path)
  --config picks the pipeline: config.yml (in-process DIET + TED) or
  config.botfleet.yml (model serving for intents, rules and memoization).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RASA = ROOT / ".venvs/rasa/bin/rasa"
# Code that runs inside training: graph components, policies and the text pipeline.
# (Stores, channels and logging do not change a model.)
COMPONENT_SOURCES = [
    ROOT / "services/rasa/botfleet_rasa/components",
    ROOT / "services/rasa/botfleet_rasa/policies",
    ROOT / "services/rasa/botfleet_rasa/textnorm.py",
    ROOT / "services/rasa/botfleet_rasa/metrics.py",
    ROOT / "services/common/botfleet_common/pii.py",
]


def training_inputs(bot: Path, config: str = "config.yml") -> list[Path]:
    files = [bot / config, bot / "domain.yml", *sorted((bot / "data").rglob("*.yml"))]
    for source in COMPONENT_SOURCES:
        files += sorted(source.rglob("*.py")) if source.is_dir() else [source]
    return [f for f in files if f.is_file()]


def content_hash(bot: Path, config: str = "config.yml") -> str:
    digest = hashlib.sha256()
    digest.update((ROOT / "services/rasa/requirements.txt").read_bytes())
    for path in training_inputs(bot, config):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bot", nargs="?", default=str(ROOT / "bots/demo"))
    parser.add_argument("--config", default="config.yml", help="the bot's Rasa config file (default config.yml)")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    bot = Path(args.bot).resolve()
    if not (bot / args.config).is_file():
        print(f"error: {bot / args.config} does not exist", file=sys.stderr)
        return 2
    name = f"model-{content_hash(bot, args.config)}"
    model = bot / "models" / f"{name}.tar.gz"
    if model.exists() and not args.force:
        print(f"model up to date: {model}", file=sys.stderr)
        print(model)
        return 0
    print(f"training {bot.name} -> {model.name}", file=sys.stderr)
    command = [
        str(RASA), "train", "--fixed-model-name", name, "--out", str(bot / "models"),
        "--config", args.config, "--domain", "domain.yml", "--data", "data",
    ]
    result = subprocess.run(command, cwd=bot, stdout=sys.stderr)
    if result.returncode != 0 or not model.exists():
        print(f"error: training failed (exit {result.returncode})", file=sys.stderr)
        return 1
    print(model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
