"""`botfleet` as CI calls it: input errors, gates and exit codes, JSON out.

The pipelines themselves are exercised by tests/e2e/test_nlu_eval.py; here a pipeline
runner that replays fixed predictions stands in, so the CLI's own logic is tested."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NLU = ROOT / "bots/demo/data/nlu.yml"


def botfleet(*args, env=None):
    return subprocess.run([sys.executable, "-m", "botfleet_cli.main", *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)


@pytest.fixture
def replaying_venvs(tmp_path):
    """A venvs folder whose `rasa` python writes canned predictions to --out."""
    python = tmp_path / "venvs/rasa/bin/python"
    python.parent.mkdir(parents=True)
    predictions = {
        "train_examples": 3, "training_seconds": 1.5,
        "predictions": [
            {"text": "hi", "expected": "greet", "predicted": "greet", "confidence": 0.9, "seconds": 0.01},
            {"text": "bye", "expected": "bye", "predicted": "greet", "confidence": 0.7, "seconds": 0.01},
        ],
        "oos_predictions": [{"text": "weather?", "predicted": "greet", "confidence": 0.2, "seconds": 0.01}],
    }
    python.write_text(
        "#!/bin/sh\n"
        "while [ $# -gt 0 ]; do if [ \"$1\" = --out ]; then shift; out=$1; fi; shift; done\n"
        f"cat > \"$out\" <<'JSON'\n{json.dumps(predictions)}\nJSON\n"
    )
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    return {"BOTFLEET_VENVS": str(tmp_path / "venvs")}


def test_missing_files_are_a_usage_error():
    result = botfleet("nlu", "eval", "--train", "nope.yml", "--test", str(NLU), "--pipeline", "diet")
    assert result.returncode == 2
    assert "--train nope.yml: no such file" in result.stderr


def test_unknown_pipeline_is_a_usage_error():
    result = botfleet("nlu", "eval", "--train", str(NLU), "--test", str(NLU), "--pipeline", "bert")
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_report_and_passing_gate(replaying_venvs):
    result = botfleet("nlu", "eval", "--train", str(NLU), "--test", str(NLU), "--pipeline", "diet", "--oos", str(NLU), "--min-accuracy", "0.5", env=replaying_venvs)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["accuracy"] == 0.5 and report["passed"] is True
    assert report["out_of_scope"]["fallback_recall"] == 1.0
    assert report["training_seconds"] == 1.5
    assert set(report) >= {"macro_f1", "per_intent", "top_confusions", "fallback_rate", "latency_ms", "parses_per_s", "threshold"}


def test_a_failed_gate_exits_1_and_says_why(replaying_venvs):
    result = botfleet("nlu", "eval", "--train", str(NLU), "--test", str(NLU), "--pipeline", "diet", "--min-accuracy", "0.9", env=replaying_venvs)
    assert result.returncode == 1
    assert json.loads(result.stdout)["failures"] == ["accuracy 0.5 is below the required 0.9"]


def test_a_broken_pipeline_exits_3(tmp_path):
    result = botfleet("nlu", "eval", "--train", str(NLU), "--test", str(NLU), "--pipeline", "diet", env={"BOTFLEET_VENVS": str(tmp_path)})
    assert result.returncode == 3 and "make venvs" in json.loads(result.stdout)["error"]


def test_split_is_deterministic_and_keeps_markup(tmp_path):
    outputs = []
    for run in ("a", "b"):
        train, test = tmp_path / f"{run}-train.yml", tmp_path / f"{run}-test.yml"
        result = botfleet("nlu", "split", "--nlu", str(NLU), "--train-out", str(train), "--test-out", str(test), "--train-per-intent", "5")
        assert result.returncode == 0, result.stderr
        outputs.append((train.read_text(), test.read_text()))
    assert outputs[0] == outputs[1]
    train_doc, test_doc = yaml.safe_load(outputs[0][0]), yaml.safe_load(outputs[0][1])
    intents = [b for b in train_doc["nlu"] if "intent" in b]
    assert all(len(b["examples"].splitlines()) <= 5 for b in intents)
    original = yaml.safe_load(NLU.read_text())
    all_examples = "".join(b["examples"] for b in original["nlu"] if "intent" in b)
    for doc in (train_doc, test_doc):
        for block in (b for b in doc["nlu"] if "intent" in b):
            for line in block["examples"].splitlines():
                assert line in all_examples  # entity markup like [laptop](product) kept verbatim
    assert any(b for b in train_doc["nlu"] if "intent" not in b) == any(b for b in original["nlu"] if "intent" not in b)


def test_rollout_runs_the_operators_command_and_passes_its_exit_codes():
    """`botfleet rollout` is the operator's own command in the operator's venv; against
    an API server that is not there it says so with exit 3 (infrastructure)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    result = botfleet("rollout", "status", "demo", "-n", "bots", "--json", env={"BOTFLEET_KUBE_API": f"http://127.0.0.1:{closed}"})
    assert result.returncode == 3, result.stderr
    assert json.loads(result.stderr)["error"] == "infrastructure"
    assert botfleet("rollout", "rewind", "demo").returncode == 2
    assert "rollout" in botfleet("--help").stdout
