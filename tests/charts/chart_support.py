"""Rendering the charts for tests: cached renders, parsed objects, and structural checks
of the Prometheus Operator kinds, whose CRD schemas are not available offline.

Imported by name (not a conftest), so it never collides with tests/operator/conftest.py."""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHARTS = {"bot": ROOT / "charts/bot", "botfleet": ROOT / "charts/botfleet"}
# The oldest and newest Kubernetes versions botfleet supports.
SUPPORTED_KUBERNETES = ("1.30.0", "1.37.0")
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "ClusterKopfPeering", "KopfPeering"}
# kopf's peering kinds (charts/botfleet/crds): the objects carry only metadata and status.
KOPF_PEERING_KINDS = {"ClusterKopfPeering": "Cluster", "KopfPeering": "Namespaced"}
RELEASE = {"bot": ("concierge", "bots"), "botfleet": ("botfleet", "botfleet-system")}

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
PROMETHEUS_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def values_files(chart: str) -> list[Path]:
    return sorted((CHARTS[chart] / "ci").glob("*.yaml"))


def load_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


@functools.cache
def _render(chart: str, values_json: str, name: str, namespace: str) -> dict[str, str]:
    with helm_python.Chart.load(str(CHARTS[chart])) as loaded:
        return loaded.render(json.loads(values_json), name=name, namespace=namespace)


def render(chart: str, values: dict[str, Any] | None = None, name: str | None = None, namespace: str | None = None) -> dict[str, str]:
    """{template path: text}; cached, so tests can share one render per values set."""
    default_name, default_namespace = RELEASE[chart]
    key = json.dumps(values or {}, sort_keys=True)
    return dict(_render(chart, key, name or default_name, namespace or default_namespace))


def objects(chart: str, values: dict[str, Any] | None = None, **release: str) -> list[dict[str, Any]]:
    """The rendered Kubernetes objects (NOTES.txt and empty documents left out)."""
    rendered = render(chart, values, **release)
    found = [
        document
        for path, text in sorted(rendered.items())
        if path.endswith((".yaml", ".yml"))
        for document in yaml.safe_load_all(text)
        if document
    ]
    return copy.deepcopy(found)


def of_kind(items: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in items if o["kind"] == kind]


def merged_values(chart: str, values: dict[str, Any]) -> dict[str, Any]:
    """The values Helm validates: the chart's defaults coalesced with `values`."""
    with helm_python.Chart.load(str(CHARTS[chart])) as loaded:
        return loaded.merge_values(values)


def schema(chart: str) -> dict[str, Any]:
    return json.loads((CHARTS[chart] / "values.schema.json").read_text())


def check_string_map(value: Any, where: str) -> None:
    assert isinstance(value, dict), where
    for key, item in value.items():
        assert isinstance(key, str) and isinstance(item, str), f"{where}.{key}"


def check_service_monitor(monitor: dict[str, Any], services: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Shape of a monitoring.coreos.com/v1 ServiceMonitor, and that it selects rendered
    Services that have the endpoint ports. Returns the selected Services."""
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    check_string_map(monitor["metadata"].get("labels", {}), "metadata.labels")
    spec = monitor["spec"]
    assert set(spec) <= {"selector", "endpoints", "jobLabel", "namespaceSelector"}, set(spec)
    selector = spec["selector"]["matchLabels"]
    check_string_map(selector, "spec.selector.matchLabels")
    assert selector
    selected = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
    assert selected, "the ServiceMonitor selects none of the chart's Services"
    assert spec["endpoints"]
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "relabelings", "metricRelabelings", "honorLabels"}, set(endpoint)
        assert endpoint["path"] == "/metrics"
        for duration in ("interval", "scrapeTimeout"):
            if duration in endpoint:
                assert DURATION.match(endpoint[duration]), endpoint[duration]
        for service in selected:
            assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}, service["metadata"]["name"]
        for relabeling in endpoint.get("relabelings", []):
            assert set(relabeling) <= {"sourceLabels", "targetLabel", "replacement", "action", "regex", "separator"}
            assert PROMETHEUS_LABEL.match(relabeling["targetLabel"])
            assert "sourceLabels" in relabeling or "replacement" in relabeling
            for label in relabeling.get("sourceLabels", []):
                assert PROMETHEUS_LABEL.match(label), label
    return selected


def check_prometheus_rule(rule: dict[str, Any]) -> None:
    """Shape of a monitoring.coreos.com/v1 PrometheusRule (the CRD's required fields,
    types and the rule-level constraints Prometheus enforces when it loads the rules)."""
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule) == {"apiVersion", "kind", "metadata", "spec"}
    check_string_map(rule["metadata"].get("labels", {}), "metadata.labels")
    groups = rule["spec"]["groups"]
    assert set(rule["spec"]) == {"groups"} and groups
    names = [g["name"] for g in groups]
    assert len(names) == len(set(names)), "group names must be unique"
    for group in groups:
        assert set(group) <= {"name", "interval", "rules", "limit", "partial_response_strategy"}, set(group)
        assert isinstance(group["name"], str) and group["name"]
        assert group["rules"]
        for item in group["rules"]:
            assert ("alert" in item) != ("record" in item), item
            assert set(item) <= {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}, set(item)
            assert isinstance(item["expr"], str) and item["expr"].strip()
            if "record" in item:
                assert re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", item["record"]), item["record"]
                assert "annotations" not in item and "for" not in item
            else:
                assert PROMETHEUS_LABEL.match(item["alert"]), item["alert"]
            if "for" in item:
                assert DURATION.match(item["for"]), item["for"]
            check_string_map(item.get("labels", {}), f"{item.get('alert') or item.get('record')}.labels")
            check_string_map(item.get("annotations", {}), f"{item.get('alert')}.annotations")


def check_kopf_peering(peering: dict[str, Any]) -> None:
    """A kopf.dev/v1 (Cluster)KopfPeering against its CRD (k8s/crds): its scope, and
    nothing beyond metadata and the status kopf keeps its peers in."""
    crd_file = ROOT / "k8s/crds" / f"{peering['kind'].lower()}s.kopf.dev.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    assert peering["apiVersion"] == f"{crd['spec']['group']}/v1" and crd["spec"]["names"]["kind"] == peering["kind"]
    allowed = {"apiVersion", "kind", "metadata"} | set(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"])
    assert set(peering) <= allowed, set(peering) - allowed
    metadata = peering["metadata"]
    assert DNS_SUBDOMAIN.match(metadata["name"]), metadata["name"]
    assert ("namespace" in metadata) == (crd["spec"]["scope"] == "Namespaced") == (KOPF_PEERING_KINDS[peering["kind"]] == "Namespaced")
    check_string_map(metadata.get("labels", {}), "metadata.labels")


def check_names(items: list[dict[str, Any]]) -> None:
    for obj in items:
        name = obj["metadata"]["name"]
        assert DNS_SUBDOMAIN.match(name) and len(name) <= 253, name
        if obj["kind"] in {"Service", "Deployment", "Namespace"}:
            assert DNS_LABEL.match(name) and len(name) <= 63, name
