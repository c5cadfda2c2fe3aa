"""Desired state of a Bot, as pure functions of the Bot.

The objects come from one set of templates, charts/bot, rendered with the Helm engine:
Helm users and the operator get the same manifests. These functions only map a Bot
to chart values and stamp the rendered objects with ownership.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

from botfleet_operator.crd import GROUP, KIND, VERSION, with_defaults
from botfleet_operator.drift import BOT_LABEL as BOT_LABEL
from botfleet_operator.drift import MANAGED_BY_LABEL as MANAGED_BY_LABEL
from botfleet_operator.drift import SPEC_HASH_ANNOTATION as SPEC_HASH_ANNOTATION

CHART_PATH_ENV = "BOTFLEET_CHART_PATH"
_DEFAULT_CHART = Path(__file__).resolve().parents[2] / "charts/bot"
MANAGED_BY = "botfleet-operator"
CHART_NAME_LENGTH = 40  # "bot.name" in charts/bot/templates/_helpers.tpl
API_TOKEN_KEY = "token"
COMPONENT_LABEL = "app.kubernetes.io/component"


def chart_path() -> Path:
    return Path(os.environ.get(CHART_PATH_ENV) or _DEFAULT_CHART)


def bot_name(name: str) -> str:
    """The chart's "bot.name": the name truncated to 40 characters, one trailing "-"
    trimmed (Sprig's trunc and trimSuffix). Bots with longer names are refused."""
    truncated = name[:CHART_NAME_LENGTH]
    return truncated[:-1] if truncated.endswith("-") else truncated


def child_name(name: str, component: str) -> str:
    """A child's name as the chart renders it: "<bot.name>-<component>"."""
    return f"{bot_name(name)}-{component}"


def api_token_secret_name(name: str) -> str:
    return child_name(name, "api-token")


def needs_generated_token(spec: dict[str, Any]) -> bool:
    """Rasa's HTTP API always needs a token: the operator makes one when the Bot names none."""
    return not ((spec.get("secrets") or {}).get("apiTokenFrom") or {}).get("name")


def chart_values(bot: dict[str, Any], service_monitor_crd: bool = False, tracks: dict[str, Any] | None = None) -> dict[str, Any]:
    """The chart values for a Bot: its defaulted spec, plus what only the operator knows
    (who manages the objects, whether ServiceMonitors can exist, the generated token,
    and during a canary rollout what each Rasa track runs: `tracks` = {"model": the
    stable track's, "canary": charts/bot's canary values})."""
    values = copy.deepcopy(with_defaults(bot)["spec"])
    if tracks:
        values.update(copy.deepcopy(tracks))
    values["managedBy"] = MANAGED_BY
    values["serviceMonitorCRDInstalled"] = service_monitor_crd
    if needs_generated_token(values):
        secrets = values.setdefault("secrets", {})
        secrets["apiTokenFrom"] = {"name": api_token_secret_name(bot["metadata"]["name"]), "key": API_TOKEN_KEY}
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
    """A hash of everything the operator applies to a child (labels, annotations and
    owner included), stamped on it: a live child whose stamp differs was last written
    for another spec, one whose stamp matches but content differs has drifted."""
    managed = copy.deepcopy({k: v for k, v in obj.items() if k != "status"})
    metadata = managed.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    annotations.pop(SPEC_HASH_ANNOTATION, None)
    if not annotations:
        metadata.pop("annotations", None)
    return hashlib.sha256(json.dumps(managed, sort_keys=True).encode()).hexdigest()[:16]


def desired_objects(bot: dict[str, Any], service_monitor_crd: bool = False, tracks: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every child object of a Bot, owned by it (deleting the Bot deletes them)."""
    metadata = bot["metadata"]
    key = json.dumps([metadata["name"], metadata["namespace"], metadata.get("uid"), bot.get("spec"), service_monitor_crd, tracks], sort_keys=True)
    # Children's events reconcile their Bot often; the spec rarely changed in between.
    # Cached as JSON text: smaller than nested dicts, and json.loads makes the caller's
    # private copy faster than deepcopy would.
    return list(json.loads(_desired_objects_cached(key)))


@functools.lru_cache(maxsize=2048)
def _desired_objects_cached(key: str) -> str:
    name, namespace, uid, spec, service_monitor_crd, tracks = json.loads(key)
    bot = {"metadata": {"name": name, "namespace": namespace, "uid": uid}, "spec": spec}
    objects = render(name, namespace, chart_values(bot, service_monitor_crd, tracks))
    # Only what the operator owns: a Secret the chart makes for Helm users (the API
    # token) is the operator's to create once, never to re-apply.
    objects = [o for o in objects if o["kind"] != "Secret"]
    for obj in objects:
        metadata = obj.setdefault("metadata", {})
        metadata["namespace"] = namespace
        metadata["ownerReferences"] = [owner_reference(bot)]
        metadata.setdefault("annotations", {})[SPEC_HASH_ANNOTATION] = spec_hash(obj)
    return json.dumps(objects, separators=(",", ":"))


def bot_labels(desired: list[dict[str, Any]]) -> dict[str, str]:
    """The labels the chart gives every child of the Bot, without the component."""
    for obj in desired:
        labels = obj["metadata"].get("labels") or {}
        if labels.get(BOT_LABEL):
            return {k: v for k, v in labels.items() if k != COMPONENT_LABEL}
    return {}


def api_token_secret(bot: dict[str, Any], labels: dict[str, str], token: str) -> dict[str, Any]:
    """The Secret holding a generated API token: labelled like the Bot's children and
    owned by the Bot, so deleting the Bot deletes it."""
    metadata = bot["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": api_token_secret_name(metadata["name"]),
            "namespace": metadata["namespace"],
            "labels": {**labels, COMPONENT_LABEL: "api-token"},
            "ownerReferences": [owner_reference(bot)],
        },
        "data": {API_TOKEN_KEY: base64.b64encode(token.encode()).decode()},
    }


def deployments_by_component(desired: list[dict[str, Any]]) -> dict[str, str]:
    """component -> Deployment name, as rendered (names are read, never recomputed)."""
    return {
        (o["metadata"].get("labels") or {}).get(COMPONENT_LABEL, ""): o["metadata"]["name"]
        for o in desired
        if o["kind"] == "Deployment"
    }
