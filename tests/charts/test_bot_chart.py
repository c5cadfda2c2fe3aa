"""charts/bot: its values schema mirrors the Bot CRD and accepts what the operator
passes; the ServiceMonitor labels series by bot and component; Vault Agent injection
delivers the variables the Rasa configuration reads."""

from __future__ import annotations

import re

import helm_python
import jsonschema
import pytest
import yaml
from chart_support import CHARTS, ROOT, load_values, merged_values, objects, of_kind, schema, values_files

from botfleet_operator.builders import chart_values
from botfleet_operator.crd import bot_schema, validate_bot

EXAMPLES = sorted((ROOT / "k8s/examples").glob("*.yaml"))
ALL_FEATURES = load_values(CHARTS["bot"] / "ci/all-features-values.yaml")
# Keys only the chart has: set by the operator (or a Helm user), not part of a Bot's spec.
CHART_ONLY = {"serviceMonitorCRDInstalled", "managedBy", "canary"}
# Empty in the chart's defaults, so it lints and renders without values.
EMPTY_ALLOWED = {"model.url", "model.version", "model.nluModelTag", "model.nluModelUrl", "stores.tracker.keyPrefix"}
COMPARED = ("type", "enum", "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "anyOf")


def resolve(node, root):
    while "$ref" in node:
        node = root["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def differences(crd, values, root, path="spec"):
    """Where the values schema and the CRD's schema disagree on a field's shape."""
    values = resolve(values, root)
    found = []
    for keyword in COMPARED:
        if crd.get(keyword) != values.get(keyword):
            found.append(f"{path}: {keyword} {crd.get(keyword)!r} != {values.get(keyword)!r}")
    if sorted(crd.get("required", [])) != sorted(values.get("required", [])):
        found.append(f"{path}: required {crd.get('required')} != {values.get('required')}")
    expected = crd.get("pattern")
    if expected and path.removeprefix("spec.") in EMPTY_ALLOWED:
        expected = "^$|" + expected
    if expected != values.get("pattern"):
        found.append(f"{path}: pattern {expected!r} != {values.get('pattern')!r}")
    crd_properties = crd.get("properties", {})
    value_properties = {k: v for k, v in values.get("properties", {}).items() if not (path == "spec" and k in CHART_ONLY)}
    if set(crd_properties) != set(value_properties):
        found.append(f"{path}: properties {sorted(crd_properties)} != {sorted(value_properties)}")
    for name in set(crd_properties) & set(value_properties):
        found += differences(crd_properties[name], value_properties[name], root, f"{path}.{name}")
    # Unknown fields: refused where the API server prunes or refuses them.
    closed = bool(crd_properties) and not crd.get("x-kubernetes-preserve-unknown-fields")
    if closed != (values.get("additionalProperties") is False):
        found.append(f"{path}: additionalProperties should be {'false' if closed else 'open'}")
    if isinstance(crd.get("additionalProperties"), dict):
        found += differences(crd["additionalProperties"], values["additionalProperties"], root, f"{path}.*")
    if "items" in crd:
        found += differences(crd["items"], values["items"], root, f"{path}[]")
    return found


def test_values_schema_mirrors_the_bot_crd():
    values_schema = schema("bot")
    assert differences(bot_schema()["properties"]["spec"], values_schema, values_schema) == []


def test_the_comparison_notices_a_drift():
    values_schema = schema("bot")
    values_schema["properties"]["rasa"]["properties"]["replicas"]["maximum"] = 99
    del values_schema["properties"]["ingress"]["properties"]["className"]
    found = differences(bot_schema()["properties"]["spec"], values_schema, values_schema)
    assert any(f.startswith("spec.rasa.replicas: maximum") for f in found)
    assert any(f.startswith("spec.ingress: properties") for f in found)


@pytest.mark.parametrize("service_monitor_crd", [False, True])
@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_the_operators_values_for_every_example_validate(example, service_monitor_crd):
    values = chart_values(yaml.safe_load(example.read_text()), service_monitor_crd)
    jsonschema.Draft7Validator(schema("bot")).validate(merged_values("bot", values))
    with helm_python.Chart.load(str(CHARTS["bot"])) as chart:
        chart.validate_schema(values)  # what the operator's every render goes through


def test_a_bot_spec_is_a_values_file():
    """Without the operator's defaulting, as `helm install -f` with a Bot's spec would."""
    for example in EXAMPLES:
        spec = yaml.safe_load(example.read_text())["spec"]
        jsonschema.Draft7Validator(schema("bot")).validate(merged_values("bot", spec))


@pytest.mark.parametrize("path", values_files("bot"), ids=lambda p: p.stem)
def test_every_ci_values_file_is_a_bot_the_api_server_admits(path):
    """So they stay realistic: the CRD's schema and CEL rules accept them as a spec."""
    spec = {k: v for k, v in load_values(path).items() if k not in CHART_ONLY}
    assert validate_bot({"apiVersion": "botfleet.io/v1alpha1", "kind": "Bot", "metadata": {"name": "concierge"}, "spec": spec}) == []


# --- metrics --------------------------------------------------------------------------


def meta_label(service_label):
    return "__meta_kubernetes_service_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", service_label)


@pytest.mark.parametrize("values", [{"serviceMonitorCRDInstalled": True}, ALL_FEATURES], ids=["defaults", "all-features"])
def test_service_monitor_labels_every_components_series_with_bot_and_component(values):
    items = objects("bot", values)
    (monitor,) = of_kind(items, "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    targets = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert targets == {
        "bot": [meta_label("botfleet.io/bot")],
        "component": [meta_label("app.kubernetes.io/component")],
        "track": [meta_label("botfleet.io/track")],
    }
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped = [s for s in of_kind(items, "Service") if selector.items() <= s["metadata"]["labels"].items()]
    assert {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in scraped} == {"rasa", "actions", "model-serving", "gateway"}
    for service in scraped:
        assert service["metadata"]["labels"]["botfleet.io/bot"] == "concierge"
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_service_monitor_waits_for_its_crd():
    assert not of_kind(objects("bot"), "ServiceMonitor")
    assert not of_kind(objects("bot", {"serviceMonitorCRDInstalled": True, "observability": {"serviceMonitor": {"enabled": False}}}), "ServiceMonitor")


# --- Vault Agent injection ------------------------------------------------------------


def pod_annotations(items):
    return {d["metadata"]["name"].rsplit("-", 1)[-1]: d["spec"]["template"]["metadata"].get("annotations", {}) for d in of_kind(items, "Deployment")}


def test_vault_agent_injects_into_rasa_only():
    annotations = pod_annotations(objects("bot", ALL_FEATURES))
    rasa = annotations.pop("rasa")
    vault = ALL_FEATURES["secrets"]["vault"]
    assert rasa["vault.hashicorp.com/agent-inject"] == "true"
    assert rasa["vault.hashicorp.com/agent-pre-populate-only"] == "true"
    assert rasa["vault.hashicorp.com/role"] == vault["role"]
    assert rasa["vault.hashicorp.com/auth-path"] == vault["authPath"]
    assert rasa["vault.hashicorp.com/service"] == vault["address"]
    for other in annotations.values():  # actions, serving
        assert not [k for k in other if k.startswith("vault.hashicorp.com/")]
    kubernetes = {**ALL_FEATURES, "secrets": {"provider": "kubernetes"}}
    for each in pod_annotations(objects("bot", kubernetes)).values():
        assert not [k for k in each if k.startswith("vault.hashicorp.com/")]


def test_vault_secrets_export_the_variables_the_rasa_config_reads():
    items = objects("bot", ALL_FEATURES)
    rasa = pod_annotations(items)["rasa"]
    (config,) = [c for c in of_kind(items, "ConfigMap") if c["metadata"]["name"].endswith("-rasa")]
    credentials = yaml.safe_load(config["data"]["credentials.yml"])
    endpoints = yaml.safe_load(config["data"]["endpoints.yml"])
    sources = {c["type"]: (c["credentialsFrom"]["vaultPath"], credentials[c["type"]]) for c in ALL_FEATURES["channels"] if "vaultPath" in c.get("credentialsFrom", {})}
    sources["eventbroker"] = (ALL_FEATURES["stores"]["eventBroker"]["credentialsFrom"]["vaultPath"], endpoints["event_broker"])
    assert set(sources) == {"telegram", "botframework", "eventbroker"}
    for name, (path, section) in sources.items():
        assert rasa[f"vault.hashicorp.com/agent-inject-secret-{name}"] == path
        template = rasa[f"vault.hashicorp.com/agent-inject-template-{name}"]
        assert f'with secret "{path}"' in template and ".Data.data" in template  # KV v2
        (prefix,) = re.findall(r"export (\w+)\{\{ \$k \}\}=", template)
        variables = re.findall(r"\$\{(\w+)\}", yaml.safe_dump(section))
        assert variables and all(v.startswith(prefix) for v in variables), (name, prefix, variables)
        # Shell-quoted: a value with a quote cannot end the string early.
        assert "='{{ $v | replaceAll \"'\" \"'\\\\''\" }}'" in template
    (deployment,) = [d for d in of_kind(items, "Deployment") if d["metadata"]["name"].endswith("-rasa")]
    assert "/vault/secrets/*" in deployment["spec"]["template"]["spec"]["containers"][0]["args"][0]


def test_secret_and_vault_sources_use_the_same_variable_names():
    """credentials.yml reads ${TELEGRAM_ACCESS_TOKEN} whether the keys come from a Secret
    (envFrom prefix) or from Vault (export prefix)."""
    from_secret = {**ALL_FEATURES, "channels": [{"type": "rest"}, {"type": "telegram", "credentialsFrom": {"secretName": "tg"}}]}
    (rasa,) = [d for d in of_kind(objects("bot", from_secret), "Deployment") if d["metadata"]["name"].endswith("-rasa")]
    env_from = rasa["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    (secret_prefix,) = [e["prefix"] for e in env_from if e.get("secretRef", {}).get("name") == "tg"]
    template = pod_annotations(objects("bot", ALL_FEATURES))["rasa"]["vault.hashicorp.com/agent-inject-template-telegram"]
    assert f"export {secret_prefix}{{{{ $k }}}}=" in template


# --- the ci values files exercise what they say ---------------------------------------


def test_all_features_values_turn_everything_on():
    items = objects("bot", ALL_FEATURES)
    kinds = {o["kind"] for o in items}
    assert {"HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "Ingress", "ServiceMonitor"} <= kinds
    (ingress,) = of_kind(items, "Ingress")
    assert ingress["spec"]["tls"] == [{"hosts": [ALL_FEATURES["ingress"]["host"]], "secretName": "concierge-tls"}]
    assert [p["path"] for p in ingress["spec"]["rules"][0]["http"]["paths"]] == ["/webhooks", "/socket.io"]
    autoscalers = {h["metadata"]["name"]: h for h in of_kind(items, "HorizontalPodAutoscaler")}
    assert {m["type"] for m in autoscalers["concierge-rasa"]["spec"]["metrics"]} == {"Resource", "Pods"}
    assert {m["type"] for m in autoscalers["concierge-actions"]["spec"]["metrics"]} == {"Resource", "External"}
    # HPAs own them (the gateway has none: it is light, and its replicas are for availability)
    assert all("replicas" not in d["spec"] for d in of_kind(items, "Deployment") if not d["metadata"]["name"].endswith("-gateway"))
    for deployment in of_kind(items, "Deployment"):
        pod = deployment["spec"]["template"]
        assert pod["spec"]["serviceAccountName"] == "concierge" and pod["spec"]["topologySpreadConstraints"]
        assert pod["metadata"]["labels"]["team"] == "concierge" and pod["metadata"]["annotations"]["cost-center"] == "cx"
    assert {o["metadata"]["labels"]["app.kubernetes.io/managed-by"] for o in items} == {"platform-team"}


def test_production_values_are_production_shaped():
    values = load_values(CHARTS["bot"] / "ci/production-values.yaml")
    items = objects("bot", values)
    assert {d["metadata"]["name"]: d["spec"]["replicas"] for d in of_kind(items, "Deployment")} == {"concierge-rasa": 3, "concierge-actions": 2, "concierge-model-serving": 2, "concierge-gateway": 2}
    assert len(of_kind(items, "PodDisruptionBudget")) == 4  # the gateway runs two replicas too
    assert of_kind(items, "Ingress")[0]["spec"]["tls"]
    (monitor,) = of_kind(items, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    for deployment in of_kind(items, "Deployment"):
        assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
