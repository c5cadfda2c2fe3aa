#!/usr/bin/env python3
"""`make bench`: one JSON document with every benchmark, measured in one run here.

- operator: ci/bench_operator.py (reconcile time and memory for N Bots against kmock);
- nlu: both pipelines (stock DIET, botfleet) on the demo bot's held-out split and on a
  few-shot set (10 examples per intent), scored by `botfleet nlu eval`, plus the
  BentoML service's parses/s under concurrent load;
- e2e: the demo bot under (a) stock Rasa (default config, in-memory stores, one worker)
  and (b) botfleet's production config (model server, Redis stores, Sanic workers),
  closed loop over REST at 1, 16 and 64 conversations, with the ratio (b)/(a);
- memory: peak RSS of every process of each stack.

Sections can be chosen: ci/bench.py [--only operator nlu e2e] [--bots 1 100 1000].
Progress goes to stderr; stdout carries only the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / ".venvs"
DEMO_NLU = ROOT / "bots/demo/data/nlu.yml"
FEWSHOT_NLU = ROOT / "model-serving/eval_data/fewshot_nlu.yml"
OOS = ROOT / "model-serving/eval_data/oos_eval.txt"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_json(command: list[str], env: dict[str, str] | None = None) -> Any:
    completed = subprocess.run(command, stdout=subprocess.PIPE, stderr=sys.stderr, text=True, env={**os.environ, **(env or {})}, check=False)
    text = completed.stdout
    if completed.returncode not in (0, 1) or "{" not in text and "[" not in text:
        raise RuntimeError(f"{command[:3]} failed with exit {completed.returncode}")
    start = min(i for i in (text.find("{"), text.find("[")) if i >= 0)
    return json.loads(text[start:])


def operator_section(bots: list[str]) -> Any:
    log(f"operator: {' '.join(bots)} Bots against kmock")
    return run_json([str(VENVS / "operator/bin/python"), str(ROOT / "ci/bench_operator.py"), *bots])["operator"]


NLU_KEYS = ("accuracy", "macro_f1", "fallback_rate", "accuracy_with_fallback", "parses_per_s", "latency_ms", "out_of_scope", "training_seconds", "train_examples", "examples")


def nlu_section() -> dict[str, Any]:
    botfleet = str(VENVS / "dev/bin/botfleet")
    result: dict[str, Any] = {"threshold": 0.65}
    with tempfile.TemporaryDirectory() as workdir:
        splits = {
            "demo_held_out": (DEMO_NLU, ["--test-fraction", "0.2"]),
            "few_shot_10_per_intent": (FEWSHOT_NLU, ["--train-per-intent", "10"]),
        }
        for name, (source, size) in splits.items():
            train, test = f"{workdir}/{name}-train.yml", f"{workdir}/{name}-test.yml"
            subprocess.run([botfleet, "nlu", "split", "--nlu", str(source), "--train-out", train, "--test-out", test, *size], check=True, stdout=subprocess.DEVNULL)
            result[name] = {}
            for pipeline in ("diet", "botfleet"):
                log(f"nlu: {pipeline} on {name}")
                report = run_json([botfleet, "nlu", "eval", "--train", train, "--test", test, "--pipeline", pipeline, "--oos", str(OOS)])
                result[name][pipeline] = {key: report.get(key) for key in NLU_KEYS}
    # Throughput grows with the batches that concurrency allows: report a moderate load
    # and the load at which the service peaks.
    result["serving"] = {}
    for concurrency in ("32", "128"):
        log(f"nlu: BentoML service under load, {concurrency} requests in flight")
        result["serving"][f"concurrency_{concurrency}"] = run_json(
            [str(VENVS / "serving/bin/botfleet-serving-bench"), "--start", "--concurrency", concurrency, "--requests", "3000"],
            env={"BENTOML_HOME": str(ROOT / ".run/bentoml")},
        )
    return result


def process_tree(pid: int) -> list[int]:
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout.split()
    return [pid] + [p for child in children for p in process_tree(int(child))]


def peak_rss_mib(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"VmHWM:\s+(\d+)", status)
    return round(int(match[1]) / 1024, 1) if match else 0.0


E2E_SETUPS: dict[str, dict[str, Any]] = {
    # (a) stock Rasa: its default config and stores, one Sanic worker.
    "stock_rasa": {"env": {"BOTFLEET_PIPELINE": "stock", "SANIC_WORKERS": "1", "BOTFLEET_EMBEDDED": "1"}, "replicas": 1},
    # (b) botfleet: the model server for intents, Redis tracker and lock stores, two Rasa
    # replicas of one Sanic worker each; conversations are spread over them, as a
    # Kubernetes Service spreads connections over pods.
    "botfleet": {"env": {"BOTFLEET_PIPELINE": "botfleet", "SANIC_WORKERS": "1", "BOTFLEET_EMBEDDED": ""}, "replicas": 2},
    # The same with one Rasa of two Sanic workers: the workers share one listening
    # socket, and the first to wake up accepts every pending keep-alive connection, so
    # one worker ends up with nearly all of them. Kept to show why (b) uses replicas.
    "botfleet_one_rasa_two_workers": {"env": {"BOTFLEET_PIPELINE": "botfleet", "SANIC_WORKERS": "2", "BOTFLEET_EMBEDDED": ""}, "replicas": 1},
}


def e2e_section(levels: list[str], seconds: str) -> dict[str, Any]:
    result: dict[str, Any] = {"levels": levels, "seconds_per_level": float(seconds)}
    for name, setup in E2E_SETUPS.items():
        env = {
            **setup["env"],
            "BOTFLEET_STACK_DIR": str(ROOT / f".run/bench-{name}"),
            "RASA_PORT": "18005", "ACTIONS_PORT": "18055", "NLU_PORT": "18300",
            "BOTFLEET_REDIS_KEY_PREFIX": f"botfleetbench{name.replace('_', '')}",
            "BOTFLEET_DATABASE_URL": os.environ.get("BOTFLEET_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/botfleet_bench"),
            "BOTFLEET_EVENTS_QUEUE": "botfleet_bench_events",
        }
        stack = [str(VENVS / "dev/bin/python"), str(ROOT / "ci/stack.py")]
        ports = [str(18005 + i) for i in range(setup["replicas"])]
        log(f"e2e: starting {name} ({setup['env']['BOTFLEET_PIPELINE']} pipeline, {len(ports)} Rasa x {setup['env']['SANIC_WORKERS']} worker(s))")
        subprocess.run([*stack, "up"], env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL)
        try:
            for port in ports[1:]:
                subprocess.run([*stack, "replica", port], env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL)
            log(f"e2e: load on {name}")
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            levels_result = run_json([str(VENVS / "dev/bin/python"), str(ROOT / "ci/bench_e2e.py"), "--url", *urls, "--seconds", seconds, "--concurrency", *levels])
            pids = json.loads((Path(env["BOTFLEET_STACK_DIR"]) / "pids.json").read_text())
            memory = {
                f"{service}:{pid}": peak_rss_mib(pid)
                for service, root in pids.items()
                for pid in process_tree(int(root))
            }
        finally:
            subprocess.run([*stack, "down"], env={**os.environ, **env}, check=False, stdout=subprocess.DEVNULL)
        result[name] = {"rasa_replicas": len(ports), "sanic_workers": int(setup["env"]["SANIC_WORKERS"]), "results": levels_result, "peak_rss_mib": memory, "peak_rss_total_mib": round(sum(memory.values()), 1)}
    ratios = {}
    for a, b in zip(result["stock_rasa"]["results"], result["botfleet"]["results"], strict=True):
        ratios[str(a["concurrency"])] = round(b["msgs_per_s"] / a["msgs_per_s"], 2) if a["msgs_per_s"] else None
    result["throughput_ratio_botfleet_over_stock"] = ratios
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=["operator", "nlu", "e2e"], default=["operator", "nlu", "e2e"])
    parser.add_argument("--bots", nargs="+", default=["1", "100", "1000"])
    parser.add_argument("--levels", nargs="+", default=["1", "16", "64"])
    parser.add_argument("--seconds", default="20")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
    if "nlu" in args.only:
        report["nlu"] = nlu_section()
    if "e2e" in args.only:
        report["e2e"] = e2e_section(args.levels, args.seconds)
    if "operator" in args.only:
        report["operator"] = operator_section(args.bots)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
