"""The pure builders: a Bot's desired objects, rendered from charts/bot."""

import copy

import kubernetes_validate
import pytest
import yaml
from conftest import EXAMPLES, SUPPORTED_KUBERNETES, load

from botfleet_operator.builders import (
    SPEC_HASH_ANNOTATION,
    api_token_secret,
    bot_labels,
    chart_values,
    child_name,
    deployments_by_component,
    desired_objects,
    render,
    spec_hash,
)

CUSTOM_KINDS = {"ServiceMonitor"}


def bot_from(path, namespace="bots"):
    bot = load(path)
    bot["metadata"].update(namespace=namespace, uid="00000000-0000-0000-0000-000000000001")
    return bot


@pytest.fixture(params=EXAMPLES, ids=[p.stem for p in EXAMPLES])
def example_objects(request):
    return desired_objects(bot_from(request.param), service_monitor_crd=True)


def by_kind(objects, kind):
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES)
def test_every_object_validates_against_kubernetes_schemas(example_objects, version):
    for obj in example_objects:
        if obj["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(obj, version, strict=True)


def test_service_monitor_shape(example_objects):
    monitor = by_kind(example_objects, "ServiceMonitor")
    for obj in monitor.values():
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        relabelings = [
            {"sourceLabels": ["__meta_kubernetes_service_label_botfleet_io_bot"], "targetLabel": "bot"},
            {"sourceLabels": ["__meta_kubernetes_service_label_app_kubernetes_io_component"], "targetLabel": "component"},
            {"sourceLabels": ["__meta_kubernetes_service_label_botfleet_io_track"], "targetLabel": "track"},
        ]
        assert obj["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": obj["spec"]["endpoints"][0]["interval"], "relabelings": relabelings}]
        assert obj["spec"]["selector"]["matchLabels"]["app.kubernetes.io/part-of"] == "botfleet"


def test_service_monitor_only_when_its_crd_exists():
    bot = bot_from(EXAMPLES[0])
    assert not by_kind(desired_objects(bot, service_monitor_crd=False), "ServiceMonitor")
    assert by_kind(desired_objects(bot, service_monitor_crd=True), "ServiceMonitor")


def test_every_child_is_owned_by_the_bot(example_objects):
    for obj in example_objects:
        (owner,) = obj["metadata"]["ownerReferences"]
        assert owner["kind"] == "Bot" and owner["controller"] is True and owner["uid"].startswith("0000")
        assert obj["metadata"]["namespace"] == "bots"
        assert SPEC_HASH_ANNOTATION in obj["metadata"]["annotations"]


def test_workloads_are_production_shaped(example_objects):
    deployments = by_kind(example_objects, "Deployment")
    assert {name.rsplit("-", 1)[-1] for name in deployments} >= {"rasa", "actions"}
    for deployment in deployments.values():
        spec = deployment["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
        for container in spec["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            assert container["readinessProbe"] and container["livenessProbe"]
        if not deployment["metadata"]["name"].endswith("-gateway"):
            # The gateway reads no Rasa config, and re-reads its routing file in place.
            assert "checksum/config" in deployment["spec"]["template"]["metadata"]["annotations"]
    rasa = next(d for n, d in deployments.items() if n.endswith("-rasa"))
    container = rasa["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"


def test_rasa_configuration_follows_the_spec():
    bot = bot_from(next(p for p in EXAMPLES if p.stem == "full-bot"))
    objects = desired_objects(bot)
    config = next(iter(by_kind(objects, "ConfigMap").values()))
    endpoints = yaml.safe_load(config["data"]["endpoints.yml"])
    assert endpoints["tracker_store"]["type"] == "botfleet_rasa.tracker_store.WindowedRedisTrackerStore"
    assert endpoints["tracker_store"]["window_turns"] == 30 and endpoints["tracker_store"]["port"] == 6380
    assert endpoints["lock_store"]["type"] == "botfleet_rasa.lock_store.LeasedRedisLockStore"
    assert endpoints["event_broker"]["type"] == "kafka"
    credentials = yaml.safe_load(config["data"]["credentials.yml"])
    assert set(credentials) == {"botfleet_rasa.channels.OpsInput", "rest", "slack", "telegram", "botframework"}
    assert credentials["slack"]["slack_token"] == "${SLACK_SLACK_TOKEN}"
    rasa = by_kind(objects, "Deployment")["concierge-rasa"]
    assert "replicas" not in rasa["spec"]  # the HPA owns the replica count
    pod = rasa["spec"]["template"]
    assert pod["metadata"]["annotations"]["vault.hashicorp.com/role"] == "concierge"
    assert "vault.hashicorp.com/agent-inject-secret-telegram" in pod["metadata"]["annotations"]
    container = pod["spec"]["containers"][0]
    assert "--remote-storage aws --model concierge/model-3.2.0.tar.gz" in container["args"][0]
    assert {"name": "BUCKET_NAME", "value": "botfleet-models"} in container["env"]
    assert {"secretRef": {"name": "concierge-slack"}, "prefix": "SLACK_"} in container["envFrom"]
    assert pod["spec"]["serviceAccountName"] == "concierge"
    ingress = by_kind(objects, "Ingress")["concierge"]
    assert [p["path"] for p in ingress["spec"]["rules"][0]["http"]["paths"]] == ["/webhooks"]


def test_configuration_changes_restart_pods_and_nothing_else_does():
    bot = bot_from(EXAMPLES[0])
    before = by_kind(desired_objects(bot), "Deployment")
    changed = copy.deepcopy(bot)
    changed["spec"].setdefault("stores", {}).setdefault("tracker", {})["windowTurns"] = 5
    after = by_kind(desired_objects(changed), "Deployment")
    scaled = copy.deepcopy(bot)
    scaled["spec"]["actionServer"] = {"replicas": 3}
    after_scaling = by_kind(desired_objects(scaled), "Deployment")
    (gateway,) = [n for n in before if n.endswith("-gateway")]
    assert before[gateway] == after[gateway]
    for name in (n for n in before if not n.endswith("-gateway")):
        checksum = before[name]["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        assert after[name]["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != checksum
        assert after_scaling[name]["spec"]["template"]["metadata"]["annotations"]["checksum/config"] == checksum


def test_builders_are_pure():
    bot = bot_from(EXAMPLES[0])
    snapshot = copy.deepcopy(bot)
    assert desired_objects(bot) == desired_objects(bot)
    assert bot == snapshot


def test_values_are_the_defaulted_spec():
    values = chart_values(bot_from(next(p for p in EXAMPLES if p.stem == "minimal-bot")))
    assert values["rasa"]["replicas"] == 1 and values["managedBy"] == "botfleet-operator"


def test_child_names_mirror_the_charts_truncation():
    # charts/bot names children "<name truncated to 40, one trailing - trimmed>-<component>".
    for name in ("hello", "a" * 40, "b" * 39 + "-x", "c" * 39 + "-", "d" * 50):
        bot = bot_from(next(p for p in EXAMPLES if p.stem == "minimal-bot"))
        values = chart_values(bot)
        rendered = render(name, "bots", values)
        deployments = {o["metadata"]["labels"]["app.kubernetes.io/component"]: o["metadata"]["name"] for o in rendered if o["kind"] == "Deployment"}
        assert deployments == {c: child_name(name, c) for c in ("rasa", "actions", "model-serving", "gateway")}, name
    assert child_name("c" * 39 + "-", "rasa") == "c" * 39 + "-rasa"


def test_names_are_read_from_the_rendered_objects():
    objects = desired_objects(bot_from(EXAMPLES[0]))
    assert deployments_by_component(objects) == {o["metadata"]["labels"]["app.kubernetes.io/component"]: o["metadata"]["name"] for o in by_kind(objects, "Deployment").values()}


def test_a_bot_without_a_token_gets_the_generated_secret():
    bot = bot_from(next(p for p in EXAMPLES if p.stem == "minimal-bot"))
    assert chart_values(bot)["secrets"]["apiTokenFrom"] == {"name": "hello-api-token", "key": "token"}
    objects = desired_objects(bot)
    assert not by_kind(objects, "Secret")  # created once by the operator, never applied
    rasa = by_kind(objects, "Deployment")["hello-rasa"]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "RASA_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hello-api-token", "key": "token"}}} in rasa["env"]
    secret = api_token_secret(bot, bot_labels(objects), "ab" * 32)
    assert secret["metadata"]["name"] == "hello-api-token" and secret["metadata"]["ownerReferences"][0]["uid"] == bot["metadata"]["uid"]
    assert secret["metadata"]["labels"]["botfleet.io/bot"] == "hello" and secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "botfleet-operator"
    kubernetes_validate.validate(secret, SUPPORTED_KUBERNETES[0], strict=True)
    own = copy.deepcopy(bot)
    own["spec"]["secrets"] = {"apiTokenFrom": {"name": "mine", "key": "t"}}
    assert chart_values(own)["secrets"]["apiTokenFrom"] == {"name": "mine", "key": "t"}


def test_the_spec_hash_covers_labels_annotations_and_owner_but_not_itself():
    obj = desired_objects(bot_from(EXAMPLES[0]))[0]
    stamped = obj["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    assert spec_hash(obj) == stamped
    for change in ({"labels": {"x": "y"}}, {"annotations": {"x": "y"}}, {"ownerReferences": []}):
        changed = copy.deepcopy(obj)
        for key, value in change.items():
            if isinstance(value, dict):
                changed["metadata"].setdefault(key, {}).update(value)
            else:
                changed["metadata"][key] = value
        assert spec_hash(changed) != stamped, change
