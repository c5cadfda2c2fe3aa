"""The Bot CRD: a valid apiextensions/v1 object, and admission that accepts the examples
and refuses bad Bots with a message naming the field (schema and CEL rules evaluated)."""

import copy

import kubernetes_validate
import pytest
from conftest import EXAMPLES, ROOT, SUPPORTED_KUBERNETES, load

from botfleet_operator.crd import bot_schema, load_crd, validate_bot, with_defaults

CRD = ROOT / "k8s/crds/bots.botfleet.io.yaml"


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES)
def test_crd_is_a_valid_custom_resource_definition(version):
    kubernetes_validate.validate(load(CRD), version, strict=True)


def test_crd_shape():
    crd = load_crd(str(CRD))
    assert crd["metadata"]["name"] == "bots.botfleet.io"
    assert crd["spec"]["scope"] == "Namespaced"
    assert "bt" in crd["spec"]["names"]["shortNames"]
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Ready", "Model", "Phase", "Rollout", "Weight", "Replicas", "Age"]


def walk(schema, path="spec"):
    yield path, schema
    for name, child in (schema.get("properties") or {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}.*")


def test_schema_is_structural():
    for path, schema in walk(bot_schema()["properties"]["spec"]):
        assert "type" in schema or schema.get("x-kubernetes-int-or-string"), f"{path} has no type"


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_examples_are_admitted(example):
    assert validate_bot(load(example)) == []


def test_defaults_fill_a_minimal_bot(minimal_bot):
    spec = with_defaults(minimal_bot)["spec"]
    assert spec["rasa"] == {"image": "botfleet/rasa:0.1.0", "replicas": 1, "workers": 1, "autoscaling": {"enabled": False, "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 80}}
    assert spec["channels"] == [{"type": "rest"}]
    assert spec["stores"]["tracker"]["windowTurns"] == 20
    assert spec["rollout"] == {"strategy": "RollingUpdate"}


def mutated(bot, path, value):
    bot = copy.deepcopy(bot)
    target = bot["spec"]
    keys = path.split(".")
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    if value is DELETE:
        target.pop(keys[-1])
    else:
        target[keys[-1]] = value
    return bot


DELETE = object()
INVALID = [
    ("model.url", "ftp://models/x.tar.gz", "spec.model.url"),
    ("model.version", DELETE, "spec.model.version: Required value"),
    ("rasa.replicas", 0, "spec.rasa.replicas: must be greater than or equal to 1"),
    ("rasa.workers", 64, "spec.rasa.workers: must be less than or equal to 16"),
    ("rasa.resources", {"requests": {"cpu": "lots"}}, "spec.rasa.resources.requests.cpu"),
    ("rasa.autoscaling", {"enabled": True, "minReplicas": 5, "maxReplicas": 2}, "spec.rasa.autoscaling: Invalid value: autoscaling.minReplicas must be less than or equal to autoscaling.maxReplicas"),
    ("actionServer.autoscaling", {"minReplicas": 9, "maxReplicas": 3}, "spec.actionServer.autoscaling: Invalid value: autoscaling.minReplicas"),
    ("channels", [{"type": "slack"}], "spec.channels[0]: Invalid value: channels[].credentialsFrom is required"),
    ("channels", [{"type": "slack", "token": "xoxb-inline"}], 'spec.channels[0].token: unknown field "token"'),
    ("channels", [{"type": "telegram", "credentialsFrom": {"secretName": "t", "vaultPath": "secret/t"}}], "spec.channels[0].credentialsFrom: Invalid value: credentialsFrom needs exactly one of secretName or vaultPath"),
    ("channels", [{"type": "whatsapp"}], "spec.channels[0].type: Unsupported value 'whatsapp'"),
    ("channels", [{"type": "rest"}, {"type": "rest"}], "spec.channels: Duplicate value"),
    ("stores.tracker.type", "mongo", "spec.stores.tracker.type: Unsupported value"),
    ("stores.tracker.keyPrefix", "bot-fleet", "spec.stores.tracker.keyPrefix"),
    ("stores.eventBroker", {"type": "pika"}, "spec.stores.eventBroker: Invalid value: eventBroker.credentialsFrom is required"),
    ("secrets", {"provider": "vault"}, "spec.secrets: Invalid value: secrets.vault is required"),
    ("ingress", {"enabled": True}, "spec.ingress.host: Invalid value: spec.ingress.host is required"),
    ("ingress", {"enabled": True, "host": "Not A Host"}, "spec.ingress.host"),
    ("rollout", {"strategy": "Canary"}, "spec.rollout: Invalid value: rollout.canary is required"),
    ("rollout", {"strategy": "Canary", "canary": {"stepWeight": 60, "maxWeight": 50}}, "spec.rollout.canary: Invalid value: rollout.canary.stepWeight must not exceed"),
    ("rollout", {"strategy": "Canary", "canary": {"maxWeight": 30, "steps": [{"setWeight": 40}]}}, "rollout.canary.steps[].setWeight must not exceed"),
    ("rollout", {"strategy": "Canary", "canary": {"steps": [{"setWeight": 120}]}}, "spec.rollout.canary.steps[0].setWeight: must be less than or equal to 100"),
    ("rollout", {"strategy": "Canary", "canary": {"analysis": {"metrics": [{"name": "x", "thresholdRange": {"min": 1, "max": 0.5}}]}}}, "spec.rollout.canary.analysis.metrics[0]: Invalid value: analysis.metrics[].thresholdRange.min must not exceed"),
    ("observability.logs.level", "TRACE", "spec.observability.logs.level: Unsupported value"),
    ("podTemplate.serviceAccountName", "Bad_Name", "spec.podTemplate.serviceAccountName"),
]


@pytest.mark.parametrize(("path", "value", "message"), INVALID, ids=[f"{p}-{i}" for i, (p, _, _) in enumerate(INVALID)])
def test_invalid_bots_are_refused_naming_the_field(minimal_bot, path, value, message):
    errors = validate_bot(mutated(minimal_bot, path, value))
    assert any(message in error for error in errors), errors


def test_several_replicas_need_redis_stores(minimal_bot):
    bot = mutated(minimal_bot, "rasa.replicas", 3)
    bot["spec"]["stores"] = {"tracker": {"type": "memory"}, "lockStore": {"type": "memory"}, "analytics": {"ephemeral": True}}
    assert validate_bot(bot) == [
        "spec.stores: Invalid value: spec.stores.tracker.type and spec.stores.lockStore.type must be redis when Rasa runs more than one replica or worker (the in-memory stores are per process)"
    ]
    bot["spec"]["rasa"]["replicas"] = 1
    assert validate_bot(bot) == []


def test_socketio_needs_one_worker(minimal_bot):
    bot = mutated(minimal_bot, "rasa.workers", 2)
    bot["spec"]["channels"] = [{"type": "rest"}, {"type": "socketio"}]
    assert validate_bot(bot) == ["spec.rasa.workers: Invalid value: spec.rasa.workers must be 1 while the socketio channel is enabled (Rasa cannot serve socket.io from several workers)"]


def test_status_fields_never_make_a_spec_invalid(minimal_bot):
    # Status is written through its subresource (and kopf may add fields there).
    minimal_bot["status"] = {"phase": "Ready", "reconcile_bot": {"phase": "Ready"}}
    assert validate_bot(minimal_bot) == []


def test_the_name_is_validated_against_the_crds_restrictions(minimal_bot):
    # A structural schema may restrict metadata.name; the operator applies it too,
    # since an older CRD or an emulator may not.
    name_schema = bot_schema()["properties"]["metadata"]["properties"]["name"]
    assert name_schema["maxLength"] == 40
    minimal_bot["metadata"]["name"] = "x" * 41
    assert any(e.startswith("metadata.name: must be at most 40 characters long") for e in validate_bot(minimal_bot))
    minimal_bot["metadata"]["name"] = "x" * 40
    assert validate_bot(minimal_bot) == []
