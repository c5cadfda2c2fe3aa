"""Which APIs the server serves, and what a Bot cannot have without them.

charts/bot is the only source of manifests and it renders each kind at one
apiVersion (autoscaling/v2, policy/v1). An older server (Kubernetes 1.20 serves
neither) cannot take those children: the operator says so once, in a condition and an
Event naming the API and the spec field that asks for it, applies everything else,
and looks again on the next resync. It does not fall back to older API versions.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from botfleet_operator.decisions import COMPONENT_SPEC_KEYS, Problem

CACHE_SECONDS = 60.0
# The Kubernetes release that first serves each group-version the chart renders.
SERVED_FROM = {
    "autoscaling/v2": "1.23",
    "policy/v1": "1.21",
    "networking.k8s.io/v1": "1.19",
    "apps/v1": "1.9",
    "v1": "1.0",
}


class ServedVersions:
    """The served group-versions, asked for at most once a minute (discovery is two
    requests; every reconcile of every Bot needs the answer)."""

    def __init__(self, ttl: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._checked_at = float("-inf")
        self._served: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def get(self, fetch: Callable[[], set[str]]) -> frozenset[str]:
        with self._lock:
            if self.clock() - self._checked_at > self.ttl:
                self._served = frozenset(fetch())
                self._checked_at = self.clock()
            return self._served

    def clear(self) -> None:
        with self._lock:
            self._checked_at = float("-inf")


SERVED = ServedVersions()


def split_by_api(desired: list[dict[str, Any]], served: frozenset[str] | set[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(objects whose apiVersion the server serves, objects it cannot take)."""
    available = [o for o in desired if o["apiVersion"] in served]
    return available, [o for o in desired if o["apiVersion"] not in served]


def spec_field(obj: dict[str, Any]) -> str:
    """The Bot field that makes the chart render this object."""
    component = (obj["metadata"].get("labels") or {}).get("app.kubernetes.io/component", "")
    key = COMPONENT_SPEC_KEYS.get(component)
    kind = obj["kind"]
    if kind == "HorizontalPodAutoscaler" and key:
        return f"spec.{key}.autoscaling.enabled"
    if kind == "PodDisruptionBudget" and key:
        return f"spec.{key}.replicas > 1 or spec.{key}.autoscaling.enabled"
    if kind == "Ingress":
        return "spec.ingress.enabled"
    if kind == "ServiceMonitor":
        return "spec.observability"
    if key:
        return f"spec.{key}"
    return "spec"


def api_message(obj: dict[str, Any]) -> str:
    api = obj["apiVersion"]
    since = SERVED_FROM.get(api)
    served_from = f", served from Kubernetes {since}" if since else ""
    return f"{obj['kind']} {obj['metadata']['name']} needs {api}{served_from}; this server does not serve it ({spec_field(obj)})"


def api_problem(unavailable: list[dict[str, Any]]) -> Problem | None:
    """One problem for every child the server cannot take (None when there is none)."""
    if not unavailable:
        return None
    return Problem("APIUnavailable", "; ".join(api_message(o) for o in sorted(unavailable, key=lambda o: (o["kind"], o["metadata"]["name"]))))
