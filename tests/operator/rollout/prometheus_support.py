"""A real Prometheus server for tests, and tiny exporters for it to scrape.

    with prometheus_server(tmp_path, [Target(port, {"namespace": "bots", "track": "canary"})]) as server:
        server.url  # http://127.0.0.1:<port>

Prometheus is Debian's (`apt-get install prometheus`, /usr/bin/prometheus 2.42). Without
it the tests using this fail instead of skipping: a skipped analysis test checks nothing.
The server listens on 127.0.0.1 only, keeps its TSDB under the test's tmp_path and scrapes
every second; `stop()` ends it early (to test an unreachable Prometheus).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import yaml
from prometheus_client import CollectorRegistry, start_http_server

PROMETHEUS = "/usr/bin/prometheus"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def prometheus_path() -> str:
    found = shutil.which("prometheus") or (PROMETHEUS if Path(PROMETHEUS).exists() else None)
    if not found:
        raise RuntimeError("prometheus is not installed: apt-get update && apt-get install -y prometheus")
    return found


@dataclass(frozen=True)
class Target:
    """One scrape target: 127.0.0.1:<port>, with `labels` added as target labels (as the
    ServiceMonitor's relabelling adds namespace, bot, component and track)."""

    port: int
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class PrometheusServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def instant(self, promql: str) -> list[dict]:
        """The result of an instant query (a vector's samples), straight from the API."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            return list(json.load(response)["data"]["result"])

    def wait_for(self, promql: str, timeout: float = 30.0) -> None:
        """Until `promql` returns at least one sample (filter with a comparison)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.instant(promql):
                return
            time.sleep(0.25)
        raise TimeoutError(f"no sample for {promql} after {timeout:g}s; log:\n{self.log.read_text()[-2000:]}")


def scrape_config(targets: list[Target], interval: str = "1s") -> dict:
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {
                "job_name": f"target-{index}",
                "scrape_interval": interval,
                "static_configs": [{"targets": [f"127.0.0.1:{target.port}"], "labels": target.labels}],
            }
            for index, target in enumerate(targets)
        ],
    }


@contextlib.contextmanager
def prometheus_server(tmp_path: Path, targets: list[Target], *, scrape_interval: str = "1s", ready_timeout: float = 30.0) -> Iterator[PrometheusServer]:
    """A Prometheus scraping `targets`, ready (/-/ready) when entered, stopped on exit."""
    root = tmp_path / "prometheus"
    (root / "data").mkdir(parents=True, exist_ok=True)
    config = root / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(targets, scrape_interval)))
    port = free_port()
    log = root / "prometheus.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                prometheus_path(),
                f"--config.file={config}",
                f"--storage.tsdb.path={root / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = PrometheusServer(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {process.returncode}:\n{log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus not ready after {ready_timeout:g}s:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def exporter(registry: CollectorRegistry) -> Iterator[int]:
    """prometheus_client's HTTP exporter of `registry` on a free port of 127.0.0.1."""
    port = free_port()
    httpd, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield port
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
