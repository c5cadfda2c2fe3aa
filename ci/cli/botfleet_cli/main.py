"""`botfleet`: the command line CI pipelines call.

    botfleet nlu eval --train FILE --test FILE --pipeline diet|botfleet [--oos FILE]
                      [--threshold 0.65] [--min-accuracy X] [--min-macro-f1 X]
                      [--min-oos-recall X] [--out FILE]
    botfleet rollout status|promote|pause|resume|abort BOT [-n NAMESPACE] [--json]

Prints one JSON document on stdout. Exit codes: 0 every gate passed, 1 a gate failed,
2 bad usage or input, 3 the pipeline itself failed (training or inference).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from botfleet_cli.nlu_metrics import evaluate, failed_gates

ROOT = Path(__file__).resolve().parents[3]
EXIT_GATE_FAILED, EXIT_USAGE, EXIT_PIPELINE_FAILED = 1, 2, 3


def venvs() -> Path:
    return Path(os.environ.get("BOTFLEET_VENVS") or ROOT / ".venvs")


# Each pipeline trains and predicts in its own venv (Rasa needs Python 3.10 and
# pydantic 1, BentoML pydantic 2) and hands back raw predictions as JSON; the metrics
# are computed here, by one piece of code for every pipeline.
def runner(pipeline: str) -> tuple[list[str], dict[str, str]]:
    if pipeline == "diet":
        python = venvs() / "rasa/bin/python"
        return [str(python), "-m", "botfleet_rasa.nlu_eval", "--config", "diet"], {}
    python = venvs() / "serving/bin/python"
    return [str(python), "-m", "botfleet_serving.nlu_eval"], {}


def run_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    command, extra_env = runner(args.pipeline)
    if not Path(command[0]).exists():
        raise PipelineError(f"{command[0]} not found: run `make venvs` first")
    with tempfile.TemporaryDirectory() as workdir:
        out = os.path.join(workdir, "predictions.json")
        command += ["--train", args.train, "--test", args.test, "--out", out]
        if args.oos:
            command += ["--oos", args.oos]
        completed = subprocess.run(command, env={**os.environ, **extra_env}, stdout=sys.stderr, stderr=sys.stderr, check=False)
        if completed.returncode != 0 or not os.path.exists(out):
            raise PipelineError(f"the {args.pipeline} pipeline failed (exit {completed.returncode})")
        return dict(json.loads(Path(out).read_text(encoding="utf-8")))


class PipelineError(RuntimeError):
    pass


def check_inputs(args: argparse.Namespace) -> list[str]:
    problems = []
    for option in ("train", "test", "oos"):
        path = getattr(args, option)
        if path is not None and not Path(path).is_file():
            problems.append(f"--{option} {path}: no such file")
    if not 0 < args.threshold < 1:
        problems.append(f"--threshold {args.threshold}: must be between 0 and 1")
    return problems


def nlu_eval(args: argparse.Namespace) -> int:
    problems = check_inputs(args)
    if problems:
        print(json.dumps({"error": "bad input", "problems": problems}), file=sys.stderr)
        return EXIT_USAGE
    try:
        raw = run_pipeline(args)
    except PipelineError as error:
        print(json.dumps({"error": str(error)}))
        return EXIT_PIPELINE_FAILED
    metrics = evaluate(raw["predictions"], raw.get("oos_predictions") or [], args.threshold)
    gates = {"min_accuracy": args.min_accuracy, "min_macro_f1": args.min_macro_f1, "min_oos_recall": args.min_oos_recall}
    failures = failed_gates(metrics, gates)
    report = {
        "pipeline": args.pipeline,
        "train_file": args.train,
        "test_file": args.test,
        "train_examples": raw.get("train_examples"),
        "training_seconds": round(float(raw.get("training_seconds") or 0.0), 2),
        **metrics,
        "gates": {name: value for name, value in gates.items() if value is not None},
        "passed": not failures,
        "failures": failures,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return EXIT_GATE_FAILED if failures else 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="botfleet", description="botfleet's command line for CI pipelines.")
    commands = root.add_subparsers(dest="command", required=True)
    nlu = commands.add_parser("nlu", help="NLU models").add_subparsers(dest="nlu_command", required=True)
    evaluate_cmd = nlu.add_parser("eval", help="train a pipeline on one file, evaluate it on another, print JSON")
    evaluate_cmd.add_argument("--train", required=True, help="Rasa NLU training file (YAML)")
    evaluate_cmd.add_argument("--test", required=True, help="Rasa NLU test file (YAML)")
    evaluate_cmd.add_argument("--pipeline", required=True, choices=["diet", "botfleet"])
    evaluate_cmd.add_argument("--oos", help="out-of-scope texts: one per line, or a Rasa NLU file")
    evaluate_cmd.add_argument("--threshold", type=float, default=0.65, help="fallback threshold (default 0.65)")
    evaluate_cmd.add_argument("--min-accuracy", type=float)
    evaluate_cmd.add_argument("--min-macro-f1", type=float)
    evaluate_cmd.add_argument("--min-oos-recall", type=float, help="minimum share of out-of-scope texts that fall back")
    evaluate_cmd.add_argument("--out", help="also write the JSON report here")
    evaluate_cmd.set_defaults(handler=nlu_eval)
    split_cmd = nlu.add_parser("split", help="split a Rasa NLU file into train and test files, deterministically")
    split_cmd.add_argument("--nlu", required=True)
    split_cmd.add_argument("--train-out", required=True)
    split_cmd.add_argument("--test-out", required=True)
    size = split_cmd.add_mutually_exclusive_group()
    size.add_argument("--test-fraction", type=float, default=None, help="share of each intent's examples to test on (default 0.2)")
    size.add_argument("--train-per-intent", type=int, default=None, help="train on N examples per intent (few-shot), test on the rest")
    split_cmd.add_argument("--seed", type=int, default=42)
    split_cmd.set_defaults(handler=nlu_split)
    # Parsed by the operator's own command (see rollout()); listed here for --help.
    commands.add_parser("rollout", help="show and steer a Bot's canary rollout: status|promote|pause|resume|abort BOT", add_help=False)
    return root


def nlu_split(args: argparse.Namespace) -> int:
    import yaml

    from botfleet_cli.nlu_split import dump, split

    if not Path(args.nlu).is_file():
        print(json.dumps({"error": f"--nlu {args.nlu}: no such file"}), file=sys.stderr)
        return EXIT_USAGE
    try:
        document = yaml.safe_load(Path(args.nlu).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        print(json.dumps({"error": f"--nlu {args.nlu}: not YAML: {error}"}), file=sys.stderr)
        return EXIT_USAGE
    train, test = split(document, args.seed, args.test_fraction, args.train_per_intent)
    Path(args.train_out).write_text(dump(train), encoding="utf-8")
    Path(args.test_out).write_text(dump(test), encoding="utf-8")
    count = lambda doc: sum(len(b["examples"].splitlines()) for b in doc["nlu"] if "intent" in b)  # noqa: E731
    print(json.dumps({"train_examples": count(train), "test_examples": count(test), "intents": sum(1 for b in test["nlu"])}))
    return 0


def rollout(argv: list[str]) -> int:
    """`botfleet rollout ...` is the operator's own command (operator/botfleet_operator/
    rollout/cli.py), run in the operator's venv: it speaks the Bot's status as the
    operator writes it. Its exit codes: 0 done, 1 refused, 2 bad input, 3 the API."""
    python = venvs() / "operator/bin/python"
    if not python.exists():
        print(json.dumps({"error": f"{python} not found: run `make venvs` first"}), file=sys.stderr)
        return EXIT_PIPELINE_FAILED
    return subprocess.run([str(python), "-m", "botfleet_operator.rollout.cli", *argv], check=False).returncode


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["rollout"]:
        return rollout(argv[1:])
    args = parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
