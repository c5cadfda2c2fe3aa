"""Building the kustomize tree and validating what comes out, for tests/k8s.

Imported by name (not a conftest), like tests/charts/chart_support.py, so it never
collides with another directory's conftest when suites run together."""

from __future__ import annotations

import copy
import functools
import importlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from botfleet_operator import builders
from botfleet_operator.crd import validate_bot

ROOT = Path(__file__).resolve().parents[2]
# The ServiceMonitor and PrometheusRule checks (their CRDs' schemas are not available
# offline) and the chart renders live with the chart tests; share them, don't copy them.
sys.path.insert(0, str(ROOT / "tests/charts"))
chart_support = importlib.import_module("chart_support")

SUPPORTED_KUBERNETES = chart_support.SUPPORTED_KUBERNETES
OVERLAYS = ("dev", "staging", "prod")
BUILDS = {"base": ROOT / "k8s/base", **{name: ROOT / "k8s/overlays" / name for name in OVERLAYS}}
BOT_NAME, BOT_NAMESPACE = "demo-support", "bots"
OPERATOR_NAMESPACE = "botfleet-system"


def kubectl() -> str:
    found = shutil.which("kubectl")
    # Fail, never skip: without kubectl nothing here is checked at all.
    assert found, "kubectl not found on PATH: tests/k8s builds every overlay with `kubectl kustomize`"
    return found


@functools.cache
def _build(name: str) -> str:
    result = subprocess.run([kubectl(), "kustomize", str(BUILDS[name])], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"kubectl kustomize {BUILDS[name].relative_to(ROOT)} failed:\n{result.stderr}"
    return result.stdout


def build(name: str) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize` builds for base or an overlay (a fresh copy)."""
    return copy.deepcopy([d for d in yaml.safe_load_all(_build(name)) if d])


def of_kind(items: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in items if o["kind"] == kind]


def one(items: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in of_kind(items, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def the_bot(items: list[dict[str, Any]]) -> dict[str, Any]:
    return one(items, "Bot", BOT_NAME)


def operator_deployment(items: list[dict[str, Any]]) -> dict[str, Any]:
    return one(items, "Deployment", "botfleet-operator")


def operator_container(items: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = operator_deployment(items)["spec"]["template"]["spec"]["containers"]
    return container


def bot_children(bot: dict[str, Any]) -> list[dict[str, Any]]:
    """What the operator creates for a Bot (charts/bot through its builder), as the API
    server would see the Bot: with a uid, and with the Prometheus Operator installed."""
    bot = copy.deepcopy(bot)
    bot["metadata"].setdefault("uid", "00000000-0000-0000-0000-000000000001")
    return builders.desired_objects(bot, service_monitor_crd=True)


def validate_objects(items: list[dict[str, Any]], version: str) -> None:
    """Every object against the schemas of Kubernetes `version` (strict: unknown fields
    fail); Bots against the CRD's schema and CEL rules; the Prometheus Operator kinds
    structurally, and their selectors against the Services beside them; kopf's
    peering objects against their CRDs."""
    services = of_kind(items, "Service")
    for obj in items:
        kind, where = obj["kind"], f"{obj['kind']} {obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
        if kind == "Bot":
            assert validate_bot(obj) == [], where
        elif kind == "ServiceMonitor":
            chart_support.check_service_monitor(obj, services)
        elif kind == "PrometheusRule":
            chart_support.check_prometheus_rule(obj)
        elif kind in chart_support.KOPF_PEERING_KINDS:
            chart_support.check_kopf_peering(obj)
        else:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except Exception as error:  # the message names the field; say which object too
                raise AssertionError(f"{where} is invalid for Kubernetes {version}: {error}") from error


@functools.cache
def render_manifests_module() -> Any:
    """ci/render_manifests.py, imported from its path (ci/ is not a package)."""
    spec = importlib.util.spec_from_file_location("render_manifests", ROOT / "ci/render_manifests.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def without_managed_by(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` without the managed-by label, which ci/render_manifests.py rewrites from Helm."""
    obj = copy.deepcopy(obj)
    for metadata in (obj["metadata"], obj.get("spec", {}).get("template", {}).get("metadata", {})):
        metadata.get("labels", {}).pop("app.kubernetes.io/managed-by", None)
    return obj
