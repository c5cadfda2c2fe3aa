#!/usr/bin/env python3
"""Operator benchmark: reconcile time and memory for 1, 100 and 1,000 Bots.

Runs kmock's Kubernetes emulator in this process and the real operator (kopf,
botfleet_operator.handlers) in a subprocess, posts N Bots at once and measures:
- the time until every Bot has a status, and until the operator has settled (every
  child created, every child's own event handled, no request for 1.5 s);
- the API requests it took per Bot, by verb and resource;
- the operator's own reconcile-duration histogram;
- the operator process's idle, final and peak RSS.
Prints JSON.
Usage: .venvs/operator/bin/python ci/bench_operator.py [N ...]
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import kmock
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests/operator"))
from kmock_support import ApplyingEmulator, register_resources  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_kib(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {key: int(re.search(rf"{key}:\s+(\d+)", status)[1]) for key in ("VmRSS", "VmHWM")}  # type: ignore[index]


def histogram(text: str, name: str) -> tuple[float, float]:
    total = float(re.search(rf"^{name}_sum (\S+)", text, re.M)[1])  # type: ignore[index]
    count = float(re.search(rf"^{name}_count (\S+)", text, re.M)[1])  # type: ignore[index]
    return total, count


class RequestLogDrain:
    """Counts and empties kmock's request log as the run goes.

    kmock records every request for test assertions, and matches each new request by
    scanning that record: quadratic over the 10^5 requests of a 1,000-Bot run. The
    benchmark asserts nothing on it, so it keeps the record short and the emulator's
    cost per request flat: the numbers then measure the operator, not the emulator.
    """

    def __init__(self, emulator: kmock.KubernetesEmulator) -> None:
        self.emulator = emulator
        self.served = 0
        self.breakdown: collections.Counter[str] = collections.Counter()
        self.last_request_at = time.perf_counter()
        self.drain()
        self.served, self.breakdown = 0, collections.Counter()

    def drain(self) -> None:
        requests = self.emulator._requests
        if requests:
            self.last_request_at = time.perf_counter()
        for request in requests:
            target = request.resource.plural if request.resource else request.url.path
            self.breakdown[f"{request.method.value} {target}"] += 1
        self.served += len(requests)
        requests.clear()

    def idle_for(self) -> float:
        return time.perf_counter() - self.last_request_at

    async def run(self) -> None:
        while True:
            self.drain()
            await asyncio.sleep(0.1)


async def run(count: int) -> dict[str, object]:
    template = yaml.safe_load((ROOT / "k8s/examples/minimal-bot.yaml").read_text())
    # kmock's emulator plus server-side apply, which the operator writes children with.
    async with ApplyingEmulator() as emulator, kmock.Server(emulator):
        register_resources(emulator)
        metrics_port = free_port()
        env = {**os.environ, "BOTFLEET_KUBE_API": str(emulator.url), "BOTFLEET_METRICS_PORT": str(metrics_port)}
        log = open(os.environ.get("BENCH_OPERATOR_LOG", os.devnull), "w")  # noqa: SIM115 - closed below
        operator = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "--standalone", "-A", "-m", "botfleet_operator.handlers",
             str(ROOT / "tests/operator/kmock_support.py")],
            env=env, stdout=subprocess.DEVNULL, stderr=log,
        )
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(100):  # wait until the operator serves readiness
                    try:
                        async with session.get(f"http://127.0.0.1:{metrics_port}/readyz") as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)  # let kopf start its watches
                idle = rss_kib(operator.pid)
                log_drain = RequestLogDrain(emulator)
                drain_task = asyncio.create_task(log_drain.run())
                started = time.perf_counter()

                async def post(index: int) -> None:
                    bot = json.loads(json.dumps(template))
                    bot["metadata"].update(name=f"bot-{index}", namespace="bench", uid=f"uid-{index}", resourceVersion="1")
                    async with session.post(f"{str(emulator.url).rstrip('/')}/apis/botfleet.io/v1alpha1/namespaces/bench/bots", json=bot) as response:
                        assert response.status < 300

                await asyncio.gather(*(post(i) for i in range(count)))
                print(f"posted {count} bots", file=sys.stderr)
                posted = time.perf_counter()
                deadline = started + 1800
                finished = settled = None
                served_at_status = 0
                while time.perf_counter() < deadline:
                    await asyncio.sleep(0.5)  # polling competes with the emulator for this loop
                    if finished is None:
                        done = sum(
                            1 for key in emulator.objects
                            if key[0].plural == "bots" and (emulator.objects[key].raw.get("status") or {}).get("phase")
                        )
                        if done >= count:
                            finished = time.perf_counter()
                            served_at_status = log_drain.served
                    # Settled: every Bot has a status and the operator has stopped
                    # writing (its children's events handled) for 1.5 s.
                    if log_drain.idle_for() >= 1.5 and finished is not None:
                        settled = time.perf_counter() - log_drain.idle_for()
                        break
                drain_task.cancel()
                log_drain.drain()
                served, breakdown = log_drain.served, log_drain.breakdown
                finished = finished or time.perf_counter()
                settled = settled or time.perf_counter()
                children = sum(1 for key in emulator.objects if key[0].plural not in ("bots", "events", "namespaces"))
                async with session.get(f"http://127.0.0.1:{metrics_port}/metrics") as response:
                    metrics_text = await response.text()
                duration_sum, duration_count = histogram(metrics_text, "botfleet_operator_reconcile_duration_seconds")
                memory = rss_kib(operator.pid)
        finally:
            operator.terminate()
            try:  # off the loop: kopf finishes its requests to the emulator this loop serves
                await asyncio.to_thread(operator.wait, 30)
            except subprocess.TimeoutExpired:
                operator.kill()
            log.close()
    return {
        "bots": count,
        "all_reconciled": done >= count,
        "seconds_to_status_all": round(finished - started, 3),
        "seconds_to_settle": round(settled - started, 3),
        "children": children,
        "seconds_to_post_all": round(posted - started, 3),
        "bots_per_second": round(count / (settled - started), 2),
        "api_requests_per_bot_to_status": round(served_at_status / count, 1),
        "api_requests_per_bot_to_settle": round(served / count, 1),
        "api_requests_by_kind": dict(breakdown.most_common()),
        "reconciles": int(duration_count),
        "mean_reconcile_ms": round(1000 * duration_sum / max(duration_count, 1), 2),
        "operator_rss_idle_mib": round(idle["VmRSS"] / 1024, 1),
        "operator_rss_after_mib": round(memory["VmRSS"] / 1024, 1),
        "operator_rss_peak_mib": round(memory["VmHWM"] / 1024, 1),
    }


def main() -> int:
    counts = [int(a) for a in sys.argv[1:]] or [1, 100, 1000]
    results = [asyncio.run(run(count)) for count in counts]
    print(json.dumps({"operator": {"emulator": "kmock", "results": results}}, indent=2))
    return 0 if all(r["all_reconciled"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
