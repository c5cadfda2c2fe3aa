"""Both charts: lint clean, render with their defaults and every ci/ values file into
objects valid for the oldest and newest supported Kubernetes, and refuse bad values
with an error that names the field (Helm's schema validation, and jsonschema itself)."""

from __future__ import annotations

import helm_python
import jsonschema
import kubernetes_validate
import pytest
from chart_support import (
    CHARTS,
    CUSTOM_KINDS,
    KOPF_PEERING_KINDS,
    SUPPORTED_KUBERNETES,
    check_kopf_peering,
    check_names,
    check_prometheus_rule,
    check_service_monitor,
    load_values,
    merged_values,
    objects,
    of_kind,
    render,
    schema,
    values_files,
)

CASES = [(chart, None) for chart in CHARTS] + [(chart, path) for chart in CHARTS for path in values_files(chart)]
IDS = [f"{chart}-{path.stem if path else 'defaults'}" for chart, path in CASES]
# Helm's lint reports this for a chart without an icon (severity info).
ICON_NOTE = "icon is recommended"


def case_values(path):
    return load_values(path) if path else {}


def test_every_chart_has_the_three_ci_values_files():
    for chart in CHARTS:
        assert [p.name for p in values_files(chart)] == ["all-features-values.yaml", "minimal-values.yaml", "production-values.yaml"]


@pytest.mark.parametrize(("chart", "path"), CASES, ids=IDS)
def test_lint_is_clean(chart, path):
    report = helm_python.lint(str(CHARTS[chart]), case_values(path), strict=True)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["error"] != ICON_NOTE] == []


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES)
@pytest.mark.parametrize(("chart", "path"), CASES, ids=IDS)
def test_rendered_objects_validate(chart, path, version):
    items = objects(chart, case_values(path))
    assert items
    check_names(items)
    services = of_kind(items, "Service")
    for obj in items:
        if obj["kind"] == "ServiceMonitor":
            check_service_monitor(obj, services)
        elif obj["kind"] == "PrometheusRule":
            check_prometheus_rule(obj)
        elif obj["kind"] in KOPF_PEERING_KINDS:
            check_kopf_peering(obj)
        else:
            assert obj["kind"] not in CUSTOM_KINDS
            kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize(("chart", "path"), CASES, ids=IDS)
def test_values_validate_against_the_schema(chart, path):
    """The same verdict from jsonschema as from Helm, on what Helm validates."""
    jsonschema.Draft7Validator.check_schema(schema(chart))
    jsonschema.Draft7Validator(schema(chart)).validate(merged_values(chart, case_values(path)))


def test_every_values_key_is_in_the_schema():
    """values.yaml documents exactly the schema's top-level keys (nothing undocumented)."""
    for chart in CHARTS:
        defaults = load_values(CHARTS[chart] / "values.yaml")
        assert set(defaults) == set(schema(chart)["properties"]), chart


BAD_VALUES = [
    # chart, values, where Helm says it is ("" is the top level), what it says
    ("botfleet", {"watch": {"mode": "some"}}, "/watch/mode", "value must be one of 'all', 'namespaces'"),
    ("botfleet", {"watch": {"mode": "namespaces"}}, "/watch/namespaces", "minItems"),
    ("botfleet", {"watch": {"namespaces": ["bots"]}}, "/watch/namespaces", "maxItems"),
    ("botfleet", {"watch": {"mode": "namespaces", "namespaces": ["bots-*"]}}, "/watch/namespaces/0", "does not match pattern"),
    ("botfleet", {"replicas": 2}, "", "additional properties 'replicas' not allowed"),
    ("botfleet", {"image": {"name": "x"}}, "/image", "additional properties 'name' not allowed"),
    ("botfleet", {"operator": {"verbose": "yes"}}, "/operator/verbose", "got string, want boolean"),
    ("botfleet", {"operator": {"logFormat": "xml"}}, "/operator/logFormat", "value must be one of"),
    ("botfleet", {"ports": {"metrics": -1}}, "/ports/metrics", "minimum"),
    ("botfleet", {"podDisruptionBudget": {"maxUnavailable": 0}}, "/podDisruptionBudget/maxUnavailable", "minimum: got 0, want 1"),
    ("botfleet", {"image": {"digest": "latest"}}, "/image/digest", "does not match pattern"),
    ("botfleet", {"metrics": {"serviceMonitor": {"interval": "often"}}}, "/metrics/serviceMonitor/interval", "does not match pattern"),
    ("bot", {"rasa": {"replicas": -1}}, "/rasa/replicas", "minimum: got -1, want 1"),
    ("bot", {"rasa": {"workers": "2"}}, "/rasa/workers", "got string, want integer"),
    ("bot", {"channels": [{"type": "whatsapp"}]}, "/channels/0/type", "value must be one of"),
    ("bot", {"rasa": {"cpu": 1}}, "/rasa", "additional properties 'cpu' not allowed"),
    ("bot", {"replicas": 2}, "", "additional properties 'replicas' not allowed"),
    ("bot", {"model": {"url": "ftp://models/x.tar.gz"}}, "/model/url", "does not match pattern"),
    ("bot", {"channels": [{"type": "slack"}]}, "/channels/0", "missing property 'credentialsFrom'"),
    ("bot", {"ingress": {"enabled": True}}, "/ingress", "missing property 'host'"),
    ("bot", {"secrets": {"provider": "vault"}}, "/secrets", "missing property 'vault'"),
    ("bot", {"rasa": {"replicas": 2}, "stores": {"lockStore": {"type": "memory"}}}, "/stores/lockStore/type", "value must be 'redis'"),
    ("bot", {"stores": {"eventBroker": {"type": "pika"}}}, "/stores/eventBroker", "missing property 'credentialsFrom'"),
]


@pytest.mark.parametrize(("chart", "values", "where", "message"), BAD_VALUES, ids=[f"{c}{w or '/'}" for c, _, w, _ in BAD_VALUES])
def test_bad_values_are_refused_naming_the_field(chart, values, where, message):
    with pytest.raises(helm_python.HelmValuesError) as refused:
        render(chart, values)
    text = str(refused.value)
    assert "values don't meet the specifications of the schema" in text
    assert f"at '{where}'" in text, text
    assert message in text, text
    # jsonschema agrees, at the same place.
    errors = list(jsonschema.Draft7Validator(schema(chart)).iter_errors(merged_values(chart, values)))
    assert where in {"".join(f"/{part}" for part in error.absolute_path) for error in errors}, errors
