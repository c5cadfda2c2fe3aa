"""The reconciler's pure decisions, each on its own."""

from botfleet_operator.decisions import (
    ComponentState,
    Problem,
    component_state,
    derive_status,
    endpoints,
    is_subset,
    merge_conditions,
    needs_update,
    referenced_secrets,
)


def test_every_secret_reference_is_found_with_its_field():
    spec = {
        "channels": [{"type": "rest"}, {"type": "slack", "credentialsFrom": {"secretName": "slack"}}, {"type": "telegram", "credentialsFrom": {"vaultPath": "x"}}],
        "stores": {"tracker": {"passwordFrom": {"name": "redis", "key": "p"}}, "eventBroker": {"credentialsFrom": {"secretName": "mq"}}, "analytics": {"databaseUrlFrom": {"name": "db", "key": "url"}}},
        "secrets": {"envFrom": [{"secretName": "shared"}], "apiTokenFrom": {"name": "api", "key": "token"}},
    }
    assert list(referenced_secrets(spec)) == [
        ("slack", "spec.channels[1].credentialsFrom.secretName"),
        ("redis", "spec.stores.tracker.passwordFrom.name"),
        ("mq", "spec.stores.eventBroker.credentialsFrom.secretName"),
        ("db", "spec.stores.analytics.databaseUrlFrom.name"),
        ("shared", "spec.secrets.envFrom[0].secretName"),
        ("api", "spec.secrets.apiTokenFrom.name"),
    ]


def test_drift_ignores_server_defaults_but_not_edits():
    desired = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    live = {"metadata": {"name": "a", "labels": {"x": "1"}, "uid": "u", "resourceVersion": "9"}, "spec": {"replicas": 2, "progressDeadlineSeconds": 600, "template": {"spec": {"dnsPolicy": "ClusterFirst", "containers": [{"name": "c", "image": "i", "terminationMessagePath": "/dev/termination-log"}]}}}, "status": {"readyReplicas": 2}}
    assert is_subset({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2, "c": 3}], "d": 4})
    assert not needs_update(desired, live)
    live["spec"]["replicas"] = 7
    assert needs_update(desired, live)
    live["spec"]["replicas"] = 2
    live["spec"]["template"]["spec"]["containers"].append({"name": "sidecar"})
    assert needs_update(desired, live)


def test_component_state_reads_deployments():
    deployment = {"metadata": {"generation": 3}, "spec": {"replicas": 2, "template": {"metadata": {"annotations": {"botfleet.io/model-version": "7"}}}}, "status": {"observedGeneration": 3, "readyReplicas": 2, "updatedReplicas": 2}}
    state = component_state(deployment, None)
    assert state == ComponentState(desired=2, ready=2, updated=2, current_generation=True, model_version="7") and state.settled
    autoscaled = {"metadata": {"generation": 1}, "spec": {}, "status": {}}
    assert component_state(autoscaled, 3).desired == 3
    assert component_state(None, None) is None


BOT = {"metadata": {"name": "b", "namespace": "n", "generation": 2}, "spec": {"model": {"version": "9"}, "channels": [{"type": "rest"}]}}


def ready(n=1, version="9"):
    return ComponentState(desired=n, ready=n, updated=n, current_generation=True, model_version=version)


def conditions(status):
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_status_when_everything_is_ready():
    status = derive_status(BOT, {"rasa": ready(2), "actions": ready()}, [], "2026-01-01T00:00:00Z")
    assert status["phase"] == "Ready" and status["replicas"] == "3/3" and status["currentModelVersion"] == "9"
    assert conditions(status) == {"Ready": ("True", "AllComponentsReady"), "ModelLoaded": ("True", "ModelLoaded"), "Progressing": ("False", "Complete"), "Degraded": ("False", "AsExpected")}
    assert status["observedGeneration"] == 2


def test_status_while_rolling_out_and_when_degraded():
    loading = ComponentState(desired=2, ready=0, updated=2, current_generation=True)
    status = derive_status(BOT, {"rasa": loading, "actions": ready()}, [], "t")
    assert status["phase"] == "Progressing"
    assert conditions(status)["ModelLoaded"] == ("False", "ModelNotLoaded")
    assert conditions(status)["Ready"] == ("False", "ComponentsNotReady")
    degraded = derive_status(BOT, {"rasa": None, "actions": None}, [Problem("SecretMissing", "Secret 's' missing")], "t")
    assert degraded["phase"] == "Degraded" and conditions(degraded)["Degraded"] == ("True", "SecretMissing")
    invalid = derive_status(BOT, {"rasa": None}, [Problem("InvalidSpec", "spec.x: bad")], "t")
    assert invalid["phase"] == "Failed"
    assert derive_status(BOT, {"rasa": None}, [], "t")["phase"] == "Pending"


def test_transition_times_change_only_with_the_status():
    old = [{"type": "Ready", "status": "False", "lastTransitionTime": "t0"}, {"type": "Degraded", "status": "False", "lastTransitionTime": "t0"}]
    new = [{"type": "Ready", "status": "True"}, {"type": "Degraded", "status": "False"}]
    assert [c["lastTransitionTime"] for c in merge_conditions(old, new, "t1")] == ["t1", "t0"]


def test_endpoints_prefer_the_ingress():
    spec = {"channels": [{"type": "rest"}, {"type": "socketio"}], "ingress": {"enabled": True, "host": "bot.example.com", "tls": {"secretName": "t"}}}
    assert endpoints("b", "n", spec) == {
        "metrics": "http://b-rasa.n.svc:5005/metrics",
        "rest": "https://bot.example.com/webhooks/rest/webhook",
        "socketio": "https://bot.example.com/socket.io",
    }
