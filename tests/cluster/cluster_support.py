"""The real single-node Kubernetes 1.20 cluster (ci/cluster.py) for tests: bring it up, talk to it, read its audit log.

Imported by name (`import cluster_support`), like tests/k8s/k8s_support.py. Stdlib only, so any venv can use it.

    c = ensure_cluster()                      # `python3 ci/cluster.py up`: quick when already up
    kubectl("get", "nodes", "-o", "json")     # with the cluster's admin kubeconfig
    import_images("localhost/botfleet/x:1")   # podman -> containerd (skipped when already imported)
    wait_for(lambda: ..., timeout=60)
    audit_events(since_ts=t0, user="admin")   # the apiserver's JSON-lines audit log, writes only
    teardown()                                # `python3 ci/cluster.py down`
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[2]
CLUSTER_PY = REPO / "ci" / "cluster.py"
ADMIN_USER = "admin"
DEBIAN_BASE_IMAGE = "localhost/debian:bookworm-slim"
PAUSE_IMAGE = "localhost/botfleet/pause:3.4.1"

T = TypeVar("T")


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    state_dir: Path
    audit_log: Path
    node_ip: str
    containerd_socket: Path

    def env(self) -> dict[str, str]:
        """os.environ plus what a subprocess needs to reach this cluster."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "BOTFLEET_CLUSTER_DIR": str(self.state_dir),
                "CONTAINERD_ADDRESS": str(self.containerd_socket), "BOTFLEET_NODE_IP": self.node_ip}


def _cluster_py(*args: str, timeout: float = 3600, capture: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ci/cluster.py with the system's Python 3 (it is stdlib-only, so the calling venv's works too)."""
    proc = subprocess.run([sys.executable, str(CLUSTER_PY), *args], capture_output=capture, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        detail = (proc.stderr or "")[-4000:] if capture else "(see its output above)"
        raise RuntimeError(f"ci/cluster.py {' '.join(args)} failed ({proc.returncode})\n{detail}")
    return proc


def cluster_info() -> Cluster:
    """The cluster's paths, as `ci/cluster.py env` reports them (it does not have to be running)."""
    values: dict[str, str] = {}
    for line in _cluster_py("env", timeout=60).stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        values[key] = value.strip("'")
    return Cluster(
        kubeconfig=Path(values["KUBECONFIG"]),
        state_dir=Path(values["BOTFLEET_CLUSTER_DIR"]),
        audit_log=Path(values["BOTFLEET_AUDIT_LOG"]),
        node_ip=values["BOTFLEET_NODE_IP"],
        containerd_socket=Path(values["CONTAINERD_ADDRESS"]),
    )


_current: Cluster | None = None


def ensure_cluster(timeout: float = 3600) -> Cluster:
    """Bring the cluster up (a cold machine compiles Kubernetes first: ~10 min) and return its paths."""
    global _current
    # Not captured: progress (and a failure's cause) lands in pytest's own capture, shown on failure or with -s.
    _cluster_py("up", timeout=timeout, capture=False)
    _current = cluster_info()
    return _current


def current() -> Cluster:
    return _current or cluster_info()


def teardown() -> None:
    """`ci/cluster.py down`: pods, processes, mounts, iptables chains and the bridge go; caches stay."""
    global _current
    _cluster_py("down", timeout=600, capture=False)
    _current = None


def kubectl(*args: str, input: str | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """kubectl with the cluster's admin kubeconfig. Raises with stderr on failure when check is true."""
    env = {**os.environ, "KUBECONFIG": str(current().kubeconfig)}
    proc = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True, env=env,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def kubectl_json(*args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json").stdout)


def wait_for(predicate: Callable[[], T], timeout: float = 60, interval: float = 0.5,
             message: str = "condition", tolerate: tuple[type[BaseException], ...] = ()) -> T:
    """Poll until predicate() returns something truthy and return it; AssertionError on timeout.

    An exception in `tolerate` counts as "not yet" (a kubectl call racing a pod restart,
    a port not yet open) and is reported as the last value if time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            last: Any = predicate()
        except tolerate as error:
            last = error
        else:
            if last:
                return typing.cast(T, last)
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {message} (last: {last!r})")
        time.sleep(interval)


def import_images(*images: str) -> None:
    """Make podman images runnable by pods (imagePullPolicy Never/IfNotPresent, exact tag)."""
    _cluster_py("import-image", *images, timeout=1800)


def ensure_debian_base() -> str:
    """The `localhost/debian:bookworm-slim` base (bash, getent, /dev/tcp) in podman; returns its tag."""
    return _cluster_py("debian-base", timeout=1800).stdout.strip() or DEBIAN_BASE_IMAGE


def _timestamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def audit_events(since_ts: float | None = None, user: str | None = None,
                 verbs: set[str] | None = None) -> list[dict[str, Any]]:
    """Audit events (writes: create/update/patch/delete) from the apiserver's JSON-lines log.

    since_ts: a time.time() value; only events received at or after it. user: the authenticated username
    (e.g. "admin", "system:serviceaccount:botfleet-system:botfleet-operator").
    """
    path = current().audit_log
    if not path.exists():
        return []
    events = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line being written right now
            if user is not None and event.get("user", {}).get("username") != user:
                continue
            if verbs is not None and event.get("verb") not in verbs:
                continue
            if since_ts is not None and _timestamp(event["requestReceivedTimestamp"]) < since_ts:
                continue
            events.append(event)
    return events
