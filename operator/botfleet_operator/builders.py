"""Desired state of a Bot, as pure functions of the Bot.

The objects come from one set of templates, charts/bot, rendered with the Helm engine:
Helm users and the operator get the same manifests. These functions only map a Bot
to chart values and stamp the rendered objects with ownership.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

from botfleet_operator.crd import GROUP, KIND, VERSION, with_defaults

CHART_PATH_ENV = "BOTFLEET_CHART_PATH"
_DEFAULT_CHART = Path(__file__).resolve().parents[2] / "charts/bot"
MANAGED_BY = "botfleet-operator"
SPEC_HASH_ANNOTATION = "botfleet.io/spec-hash"


def chart_path() -> Path:
    return Path(os.environ.get(CHART_PATH_ENV) or _DEFAULT_CHART)


def chart_values(bot: dict[str, Any], service_monitor_crd: bool = False) -> dict[str, Any]:
    """The chart values for a Bot: its defaulted spec, plus what only the operator knows."""
    values = copy.deepcopy(with_defaults(bot)["spec"])
    values["managedBy"] = MANAGED_BY
    values["serviceMonitorCRDInstalled"] = service_monitor_crd
    return values


def render(name: str, namespace: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    """Renders charts/bot; returns the objects in a stable order (kind, then name)."""
    import helm_python

    with helm_python.Chart.load(str(chart_path())) as chart:
        rendered = chart.render(values, name=name, namespace=namespace)
    objects = [
        document
        for path, text in sorted(rendered.items())
        if path.endswith((".yaml", ".yml"))
        for document in yaml.safe_load_all(text)
        if document
    ]
    return sorted(objects, key=lambda o: (o["kind"], o["metadata"]["name"]))


def owner_reference(bot: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": bot["metadata"]["name"],
        "uid": bot["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def spec_hash(obj: dict[str, Any]) -> str:
    """A hash of what the operator manages in a child, to tell drift from no-op."""
    managed = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
    managed["labels"] = obj["metadata"].get("labels", {})
    return hashlib.sha256(json.dumps(managed, sort_keys=True).encode()).hexdigest()[:16]


def desired_objects(bot: dict[str, Any], service_monitor_crd: bool = False) -> list[dict[str, Any]]:
    """Every child object of a Bot, owned by it (deleting the Bot deletes them)."""
    metadata = bot["metadata"]
    key = json.dumps([metadata["name"], metadata["namespace"], metadata.get("uid"), bot.get("spec"), service_monitor_crd], sort_keys=True)
    # Children's events reconcile their Bot often; the spec rarely changed in between.
    # Cached as JSON text: smaller than nested dicts, and json.loads makes the caller's
    # private copy faster than deepcopy would.
    return list(json.loads(_desired_objects_cached(key)))


@functools.lru_cache(maxsize=2048)
def _desired_objects_cached(key: str) -> str:
    name, namespace, uid, spec, service_monitor_crd = json.loads(key)
    bot = {"metadata": {"name": name, "namespace": namespace, "uid": uid}, "spec": spec}
    objects = render(name, namespace, chart_values(bot, service_monitor_crd))
    for obj in objects:
        metadata = obj.setdefault("metadata", {})
        metadata["namespace"] = namespace
        metadata["ownerReferences"] = [owner_reference(bot)]
        metadata.setdefault("annotations", {})[SPEC_HASH_ANNOTATION] = spec_hash(obj)
    return json.dumps(objects, separators=(",", ":"))
