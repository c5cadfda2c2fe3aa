#!/usr/bin/env python3
"""Where a turn's milliseconds go inside Rasa, under closed-loop load.

Starts the demo stack (a pipeline of your choice), drives it with ci/bench_e2e.py, and
samples every Rasa worker with py-spy meanwhile. Each sample is attributed to one part
of the turn by the frames on its stack, then the shares are printed as JSON:

    python ci/profile_rasa.py [--pipeline botfleet] [--concurrency 16] [--seconds 20]

Parts, first match wins (so featurisation inside a policy counts as featurisation):
lock store, event broker, tracker load, tracker save, dialogue featurisation, policies,
each NLU component, custom actions (HTTP to the action server), Rasa's graph engine,
Sanic/HTTP, other. `--raw FILE` keeps py-spy's collapsed stacks for a flame graph.
Needs py-spy (`pip install py-spy`) and ptrace rights (root, or CAP_SYS_PTRACE).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import process_tree  # ci/bench.py, beside this script

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / ".venvs"

# (part, substrings of a frame "function (file:line)"); checked in this order.
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("lock store", ("lock_store.py",)),
    ("event broker", ("event_broker.py", "/pika/", "brokers/")),
    ("tracker load", ("retrieve (", "retrieve_full_tracker", "fetch_tracker_and_update_session", "deserialise_tracker", "get_tracker (")),
    ("tracker save", ("save_tracker", "tracker_store.py", "/archive.py")),
    ("dialogue featurisation", ("past_states", "states_for_tracker_history", "featurizers/", "_prediction_states", "applied_events", "generate_all_prior_trackers")),
    ("policies", ("core/policies/", "botfleet_rasa/policies/", "policy_ensemble")),
    ("nlu: preprocessor (normalise, PII, language)", ("components/preprocessor.py", "/lingua/", "botfleet_common/pii", "botfleet_common/textnorm", "emoji")),
    ("nlu: remote intent classifier (blocking HTTP to model serving)", ("remote_intent.py",)),
    ("nlu: tokenizer and featurizers", ("nlu/tokenizers/", "nlu/featurizers/", "sklearn/feature_extraction")),
    ("nlu: logistic regression fallback", ("logistic_regression_classifier",)),
    ("nlu: CRF entity extractor", ("crf_entity_extractor", "crfsuite")),
    ("nlu: other components", ("rasa/nlu/", "botfleet_rasa/components/")),
    ("custom actions: validating the response (jsonschema)", ("_validate_action_result",)),
    ("forms: slot validation", ("validate_slots",)),
    ("actions (running them, HTTP to the action server)", ("core/actions/", "utils/endpoints.py")),
    ("rasa graph engine", ("rasa/engine/", "/dask/")),
    ("http server (sanic, json)", ("/sanic/", "/ujson", "rasa/server.py", "channels/rest.py", "channels/channel.py")),
]


# Leaf frames of a process with nothing to do: Sanic's main process waiting for its
# workers, a worker's event loop (uvloop, in C) waiting for the next request.
IDLE_LEAVES = ("poll (multiprocessing/popen_fork.py", "serve (sanic/server/runners.py", "select (selectors.py")


def part_of(stack: str) -> str:
    if stack.rpartition(";")[2].startswith(IDLE_LEAVES):
        return "idle"
    for part, needles in PARTS:
        if any(needle in stack for needle in needles):
            return part
    return "other"


def summarise(raw: str) -> dict[str, Any]:
    """py-spy's collapsed stacks ("frame;frame;... count") as shares per part. py-spy
    samples wall time here (a worker blocked on a socket counts), idle excluded."""
    samples: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        part = part_of(stack)
        if part == "idle":
            continue
        samples[part] += int(count)
        total += int(count)
    return {
        "samples": total,
        "share": {part: round(n / total, 3) for part, n in samples.most_common()} if total else {},
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_service(services: dict[str, int]) -> dict[str, float]:
    return {name: sum(cpu_seconds(p) for p in process_tree(pid)) for name, pid in services.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default="botfleet", choices=["botfleet", "diet", "stock"])
    parser.add_argument("--workers", default="2")
    parser.add_argument("--concurrency", default="16")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--raw", help="keep py-spy's collapsed stacks here")
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path.home() / ".local/bin"))  # pip install --user
    if py_spy is None:
        print("py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    run = ROOT / ".run/profile"
    env = {
        **os.environ,
        "BOTFLEET_PIPELINE": args.pipeline, "SANIC_WORKERS": args.workers,
        "BOTFLEET_EMBEDDED": "1" if args.pipeline == "stock" else "",
        "BOTFLEET_STACK_DIR": str(run), "RASA_PORT": "18105", "ACTIONS_PORT": "18155", "NLU_PORT": "18400",
        "BOTFLEET_REDIS_KEY_PREFIX": "botfleetprofile", "BOTFLEET_EVENTS_QUEUE": "botfleet_profile_events",
        "BOTFLEET_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/botfleet_bench",
    }
    stack = [str(VENVS / "dev/bin/python"), str(ROOT / "ci/stack.py")]
    subprocess.run([*stack, "up"], env=env, check=True, stdout=subprocess.DEVNULL)
    try:
        services = {name: int(pid) for name, pid in json.loads((run / "pids.json").read_text()).items()}
        for shared in ("redis-server", "rabbitmq", "postgres"):
            found = subprocess.run(["pgrep", "-o", "-f", shared], capture_output=True, text=True, check=False).stdout.split()
            if found:
                services[shared] = int(found[0])
        rasa_pid = services["rasa"]
        load = subprocess.Popen(
            [str(VENVS / "dev/bin/python"), str(ROOT / "ci/bench_e2e.py"), "--url", "http://127.0.0.1:18105",
             "--seconds", str(args.seconds + 4), "--warmup", "3", "--concurrency", args.concurrency],
            stdout=subprocess.PIPE, text=True,
        )
        time.sleep(4)  # past the warm-up
        services["load generator"] = load.pid
        cpu_before, wall_before = cpu_by_service(services), time.monotonic()
        with tempfile.TemporaryDirectory() as scratch:
            raw_path = args.raw or f"{scratch}/rasa.txt"
            subprocess.run(
                [py_spy, "record", "--pid", str(rasa_pid), "--subprocesses", "--format", "raw",
                 "--rate", "200", "--duration", str(args.seconds), "--nonblocking", "--output", raw_path],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            profile = summarise(Path(raw_path).read_text())
        cpu_after, wall = cpu_by_service(services), time.monotonic() - wall_before
        load_result = json.loads(load.communicate()[0])
    finally:
        subprocess.run([*stack, "down"], env=env, check=False, stdout=subprocess.DEVNULL)
    # CPU per message of each service (process trees; shared servers by their oldest
    # process, so only roughly), over the sampled window.
    messages = load_result[0]["msgs_per_s"] * wall
    cpu_ms = {name: round(1000 * (cpu_after[name] - cpu_before[name]) / messages, 1) for name in services} if messages else {}
    report = {
        "pipeline": args.pipeline, "workers": args.workers, "load": load_result,
        "cpu_ms_per_message": cpu_ms, "cpu_cores_busy": round(sum(cpu_after[n] - cpu_before[n] for n in services) / wall, 2),
        "rasa_wall_time_share": profile,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
