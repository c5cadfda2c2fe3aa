"""Test and benchmark support for running the operator against kmock's emulator.

Loaded by kopf as an extra operator module (the login handler), and imported by the
tests and ci/bench_operator.py to register the resources the operator uses.

kmock 0.8 knows nothing of server-side apply: it merges every PATCH body into the
stored object whatever its Content-Type, answers 404 to a PATCH of an object that does
not exist (a real apply creates it), ignores dryRun (a dry run would really write)
and assigns no uid or resourceVersion. ApplyingEmulator adds the little the operator
relies on, for one field manager: an apply creates or replaces the object with the
applied configuration (the status, and spec.replicas that the applier leaves out,
stay: another manager's), normalised the way the API server normalises (an env var's
empty value dropped, integer quantities as strings, 1024Mi as 1Gi), with a uid, a
resourceVersion bumped only by a real change, a generation bumped by a spec change,
and managedFields; a dry run changes nothing and notifies no watcher. What it does
not do, and the real-cluster tests prove: field ownership among several managers
(a field someone else added by hand is dropped here, kept by a real server),
defaulting, validation, admission, garbage collection. Every other write gets a new
resourceVersion too (kmock keeps the one it is sent).
"""

from __future__ import annotations

import copy
import datetime
import itertools
import os
import re
import uuid
from typing import Any

import aiohttp.web
import kmock
import kopf

VERBS = {"list", "watch", "get", "create", "patch", "update", "delete"}
# The emulator serves only what discovery lists: kopf's own needs and every kind the
# operator reads or writes.
RESOURCES = {
    "v1/namespaces": ("Namespace", False, set()),
    "v1/events": ("Event", True, set()),
    "v1/configmaps": ("ConfigMap", True, set()),
    "v1/secrets": ("Secret", True, set()),
    "v1/services": ("Service", True, set()),
    "apps/v1/deployments": ("Deployment", True, {"status"}),
    "networking.k8s.io/v1/ingresses": ("Ingress", True, set()),
    "networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", True, set()),
    "autoscaling/v2/horizontalpodautoscalers": ("HorizontalPodAutoscaler", True, set()),
    "policy/v1/poddisruptionbudgets": ("PodDisruptionBudget", True, set()),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False, set()),
    "botfleet.io/v1alpha1/bots": ("Bot", True, {"status"}),
}
# What Kubernetes 1.20 serves instead of autoscaling/v2 and policy/v1.
KUBERNETES_1_20 = {
    **{key: value for key, value in RESOURCES.items() if not key.startswith(("autoscaling/", "policy/"))},
    "autoscaling/v2beta2/horizontalpodautoscalers": ("HorizontalPodAutoscaler", True, set()),
    "policy/v1beta1/poddisruptionbudgets": ("PodDisruptionBudget", True, set()),
}


def register_resources(emulator: Any, resources: dict[str, tuple[str, bool, set[str]]] | None = None) -> None:
    for key, (kind, namespaced, subresources) in (resources or RESOURCES).items():
        emulator.resources[key] = kmock.ResourceInfo(kind=kind, namespaced=namespaced, verbs=VERBS, subresources=subresources)


# --- the API server's normalisation of what it stores ---------------------------------

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5}


def normalise_quantity(value: Any) -> Any:
    """As the API server stores a quantity: a string, in the largest binary unit that
    keeps it whole (1024Mi -> 1Gi)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return value
    text = str(value)
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|Pi)", text)
    if match:
        number, unit = int(match[1]), _BINARY[match[2]]
        while number and number % 1024 == 0 and unit < 5:
            number, unit = number // 1024, unit + 1
        text = f"{number}{next(k for k, v in _BINARY.items() if v == unit)}"
    return text


def normalise(obj: Any, key: str = "") -> Any:
    if isinstance(obj, dict):
        if key in ("requests", "limits"):
            return {k: normalise_quantity(v) for k, v in obj.items()}
        result = {k: normalise(v, k) for k, v in obj.items()}
        if key == "env" and result.get("value") == "":
            del result["value"]  # an env var's empty value is not stored
        return result
    if isinstance(obj, list):
        return [normalise(item, key) for item in obj]
    return obj


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def server_apply(existing: dict[str, Any] | None, applied: dict[str, Any], manager: str, version: str, dry_run: bool = False) -> dict[str, Any]:
    """The object an apply by a single field manager leaves: see the module docstring.
    A dry run answers with the object as it would be stored, but still at the stored
    resourceVersion: only a real write assigns a new one."""
    result = normalise(copy.deepcopy(applied))
    metadata = result.setdefault("metadata", {})
    before = (existing or {}).get("metadata") or {}
    for key in ("uid", "creationTimestamp", "resourceVersion", "generation", "managedFields"):
        if key in before:
            metadata[key] = before[key]
    metadata.setdefault("uid", str(uuid.uuid4()))
    metadata.setdefault("creationTimestamp", _now())
    if existing is not None:
        if "status" in existing:
            result["status"] = copy.deepcopy(existing["status"])
        replicas = (existing.get("spec") or {}).get("replicas")
        if replicas is not None and "replicas" not in (result.get("spec") or {}) and result.get("kind") == "Deployment":
            result.setdefault("spec", {})["replicas"] = replicas  # the HPA's (or the default)
    elif result.get("kind") == "Deployment":
        result.setdefault("spec", {}).setdefault("replicas", 1)  # the API server's default
    unchanged = existing is not None and _content(existing) == _content(result)
    if unchanged:
        return copy.deepcopy(existing)  # type: ignore[arg-type]
    spec_changed = existing is None or existing.get("spec") != result.get("spec")
    metadata["generation"] = int(before.get("generation") or 0) + (1 if spec_changed else 0)
    metadata["resourceVersion"] = str(before.get("resourceVersion") or "") if dry_run else version
    metadata["managedFields"] = [{
        "manager": manager, "operation": "Apply", "apiVersion": result.get("apiVersion", ""),
        "time": _now(), "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}, "f:spec": {}},
    }]
    return result


def _content(obj: dict[str, Any]) -> Any:
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in ("resourceVersion", "generation", "managedFields")}
    return {**{k: v for k, v in obj.items() if k != "metadata"}, "metadata": metadata}


class ApplyingEmulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    """kmock's emulator, with server-side apply and dry runs as described above."""

    _versions = itertools.count(1000)

    async def _handle(self, request: Any) -> Any:
        content_type = next((v for k, v in request.headers.items() if k.lower() == "content-type"), "")
        method = str(request.method).upper().rsplit(".", 1)[-1]
        if request.resource is not None and method == "PATCH" and content_type.startswith("application/apply-patch"):
            return await self._apply(request)
        if request.resource is not None and method in ("POST", "PUT", "PATCH"):
            self._bump_version(request)
        return await super()._handle(request)

    def _bump_version(self, request: Any) -> None:
        """Every write gets a new resourceVersion, as on a real server: kopf tells its
        own writes' echoes from newer changes by it (without, it sees a status write of
        a handler as a Bot not yet handled, and handles it again)."""
        version = str(next(self._versions))
        if isinstance(request.data, dict):
            request.data.setdefault("metadata", {})["resourceVersion"] = version
        elif isinstance(request.data, list):  # a JSON patch, after its test of the old version
            request.data.append({"op": "add", "path": "/metadata/resourceVersion", "value": version})

    async def _apply(self, request: Any) -> aiohttp.web.StreamResponse:
        key = (request.resource, request.namespace, request.name)
        dry_run = "dryRun" in request.params
        async with self._lock:
            try:
                stored = self._objects[key]
            except KeyError:
                stored = None
            existing = None if stored is None or stored.deleted else stored.raw
            version = str(next(self._versions))
            result = server_apply(existing, dict(request.data or {}), request.params.get("fieldManager", ""), version, dry_run)
            if not dry_run and result != existing:
                if stored is None:
                    self._objects[key] = result
                else:
                    stored.create(result)
                await self._buses[request.resource].put({"type": "ADDED" if existing is None else "MODIFIED", "object": copy.deepcopy(result)})
        return aiohttp.web.json_response(result)


def applies(emulator: Any, dry_run: bool | None = None, since: int = 0) -> list[Any]:
    """The server-side applies the operator sent (dry runs or real ones, or both),
    after the first `since` requests."""
    found = []
    for request in list(emulator)[since:]:
        content_type = next((v for k, v in request.headers.items() if k.lower() == "content-type"), "")
        if request.resource is None or not content_type.startswith("application/apply-patch"):
            continue
        if dry_run is None or dry_run == ("dryRun" in request.params):
            found.append(request)
    return found


@kopf.on.login()
def login_to_emulator(**_: Any) -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(server=os.environ["BOTFLEET_KUBE_API"], insecure=True)
