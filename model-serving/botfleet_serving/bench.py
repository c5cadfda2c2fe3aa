"""Throughput and latency of a running NLU service (closed loop, loopback only).

``bench(url, texts, concurrency, requests)`` keeps ``concurrency`` requests in flight, each
``POST /classify`` with ``texts_per_request`` texts, until ``requests`` have completed or
``max_seconds`` have passed, and returns parses/s (texts per second) and latency
percentiles. ``serve(...)`` starts ``bentoml serve`` in a subprocess for the benchmark and
the tests.

``botfleet-serving-bench`` (also ``model-serving/bench_serving.py``) prints JSON. With
``--start`` it starts the service itself (``--tag``, ``$BENTOML_HOME``), else it measures
``--url``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import httpx

SERVICE = "botfleet_serving.service:NLUService"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float = 180.0, proc: subprocess.Popen[bytes] | None = None) -> float:
    """Seconds until ``GET /readyz`` answers 200; raises if the process exits or time runs out."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"bentoml serve exited with code {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url}/readyz not ready after {timeout} s")


@contextlib.contextmanager
def serve(
    tag: str,
    bentoml_home: str | None = None,
    port: int | None = None,
    env: dict[str, str] | None = None,
    log_path: str | None = None,
    timeout: float = 180.0,
) -> Iterator[str]:
    """Run ``bentoml serve`` on 127.0.0.1 with the model ``tag``; yields the base URL."""
    port = port or free_port()
    child_env = {
        **os.environ,
        "BOTFLEET_NLU_MODEL_TAG": tag,
        "HF_HUB_OFFLINE": "1",
        "BENTOML_DO_NOT_TRACK": "True",
    }
    if bentoml_home:
        child_env["BENTOML_HOME"] = bentoml_home
    child_env.update(env or {})
    bentoml_bin = str(Path(sys.executable).with_name("bentoml"))
    cmd = [bentoml_bin, "serve", SERVICE, "--host", "127.0.0.1", "--port", str(port)]
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        cmd,
        cwd=str(PACKAGE_ROOT),
        env=child_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, timeout, proc)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(timeout=10)
        if log_path and hasattr(log, "close"):
            log.close()  # type: ignore[union-attr]


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))
    return ordered[k]


class _Connection:
    """A minimal HTTP/1.1 keep-alive client for POST with JSON: the load generator shares the
    machine with the service, so it must cost little CPU (httpx costs several times more)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        if not status_line:
            await self.close()
            raise ConnectionError("connection closed")
        status = int(status_line.split()[1])
        length = 0
        chunked = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value.strip())
            elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if chunked:
            data = b""
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                data += chunk[:-2]
        else:
            data = await self.reader.readexactly(length)
        return status, data

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


async def _run(
    url: str, texts: Sequence[str], concurrency: int, requests: int, per_request: int, max_seconds: float
) -> dict[str, Any]:
    parsed = httpx.URL(url)
    host, port = parsed.host, parsed.port or 80
    latencies: list[float] = []
    errors: dict[str, int] = {}
    issued = 0
    bodies = [
        json.dumps(
            {"texts": [texts[(i * per_request + j) % len(texts)] for j in range(per_request)]}
        ).encode()
        for i in range(min(requests, max(1, len(texts))))
    ]
    conns = [_Connection(host, port) for _ in range(concurrency)]
    # Warm-up: one request per connection, not measured.
    await asyncio.gather(*(c.post("/classify", bodies[0]) for c in conns))
    started = time.perf_counter()
    deadline = started + max_seconds

    async def worker(conn: _Connection) -> None:
        nonlocal issued
        while issued < requests and time.perf_counter() < deadline:
            body = bodies[issued % len(bodies)]
            issued += 1
            t0 = time.perf_counter()
            try:
                status, data = await conn.post("/classify", body)
                ok = status == 200 and len(json.loads(data)) == per_request
                key = "ok" if ok else f"http_{status}"
            except (OSError, ValueError, asyncio.IncompleteReadError) as e:
                await conn.close()
                ok, key = False, type(e).__name__
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                errors[key] = errors.get(key, 0) + 1

    await asyncio.gather(*(worker(c) for c in conns))
    elapsed = time.perf_counter() - started
    for c in conns:
        await c.close()
    done = len(latencies)
    return {
        "url": url,
        "concurrency": concurrency,
        "texts_per_request": per_request,
        "requests": done,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "seconds": round(elapsed, 3),
        "parses_per_second": round(done * per_request / elapsed, 1) if elapsed > 0 else 0.0,
        "requests_per_second": round(done / elapsed, 1) if elapsed > 0 else 0.0,
        "latency_ms": {
            "p50": round(_percentile(latencies, 50) * 1000, 1),
            "p90": round(_percentile(latencies, 90) * 1000, 1),
            "p99": round(_percentile(latencies, 99) * 1000, 1),
            "max": round(max(latencies, default=0.0) * 1000, 1),
        },
    }


def bench(
    url: str,
    texts: Sequence[str],
    concurrency: int = 32,
    requests: int = 3000,
    texts_per_request: int = 1,
    max_seconds: float = 60.0,
) -> dict[str, Any]:
    """Closed-loop load on ``POST /classify``; see the module docstring."""
    if not texts:
        raise ValueError("no texts to send")
    return asyncio.run(_run(url, list(texts), concurrency, requests, texts_per_request, max_seconds))


def default_texts() -> list[str]:
    """Varied messages: the demo bot's examples and the out-of-scope evaluation set, if present."""
    from .nlu_data import load_nlu

    root = PACKAGE_ROOT.parent
    texts: list[str] = []
    nlu = root / "bots" / "demo" / "data" / "nlu.yml"
    if nlu.exists():
        texts += [e.text for e in load_nlu(nlu)]
    oos = PACKAGE_ROOT / "eval_data" / "oos_eval.txt"
    if oos.exists():
        texts += [s for s in oos.read_text().splitlines() if s.strip() and not s.startswith("#")]
    return texts or ["How much does the laptop cost?", "I want to fly to Berlin", "Where is my order?"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="botfleet-serving-bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--start", action="store_true", help="start bentoml serve for the run")
    parser.add_argument("--tag", default=os.environ.get("BOTFLEET_NLU_MODEL_TAG", "botfleet-nlu:latest"))
    parser.add_argument("--bentoml-home", default=os.environ.get("BENTOML_HOME"))
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--texts-per-request", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=None, help="BOTFLEET_SERVING_WORKERS for --start")
    args = parser.parse_args(argv)
    texts = default_texts()

    def run(url: str) -> dict[str, Any]:
        return bench(url, texts, args.concurrency, args.requests, args.texts_per_request, args.max_seconds)

    if args.start:
        env = {"BOTFLEET_SERVING_WORKERS": str(args.workers)} if args.workers else {}
        with serve(args.tag, args.bentoml_home, env=env) as url:
            report = run(url)
            report["url"] = "started"
    else:
        report = run(args.url)
    report["tag"] = args.tag
    report["cpus"] = os.cpu_count()
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if report["errors"] == 0 else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
