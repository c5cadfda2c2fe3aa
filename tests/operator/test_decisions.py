"""The reconciler's pure decisions, each on its own."""

import copy

from botfleet_operator.decisions import (
    EPHEMERAL_MESSAGE,
    ComponentState,
    Problem,
    blocks_apply,
    bot_reference,
    carried_problems,
    component_state,
    derive_status,
    endpoints,
    is_ephemeral,
    merge_conditions,
    name_errors,
    referenced_secrets,
    retryable,
    spec_problems,
    status_patch,
    storage_errors,
    warnings,
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


def test_component_state_reads_deployments():
    deployment = {"metadata": {"generation": 3}, "spec": {"replicas": 2, "template": {"metadata": {"annotations": {"botfleet.io/model-version": "7"}}}}, "status": {"observedGeneration": 3, "readyReplicas": 2, "updatedReplicas": 2}}
    state = component_state(deployment, None)
    assert state == ComponentState(desired=2, ready=2, updated=2, current_generation=True, model_version="7") and state.settled
    autoscaled = {"metadata": {"generation": 1}, "spec": {}, "status": {}}
    assert component_state(autoscaled, 3).desired == 3
    # The index of Deployments keeps spec.replicas even when it is None (an emulator
    # with no defaulting); the HPA's count, once set, is what the Deployment wants.
    assert component_state({"spec": {"replicas": None}, "status": {"readyReplicas": None}}, 2) == ComponentState(desired=2, ready=0, updated=0, current_generation=True)
    assert component_state({"spec": {"replicas": 4}}, 2).desired == 4
    assert component_state(None, None) is None


BOT = {"metadata": {"name": "b", "namespace": "n", "generation": 2}, "spec": {"model": {"version": "9"}, "channels": [{"type": "rest"}], "stores": {"analytics": {"databaseUrlFrom": {"name": "db", "key": "url"}}}}}


def ready(n=1, version="9"):
    return ComponentState(desired=n, ready=n, updated=n, current_generation=True, model_version=version)


def conditions(status):
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_status_when_everything_is_ready():
    status = derive_status(BOT, {"rasa": ready(2), "actions": ready()}, [], "2026-01-01T00:00:00Z")
    assert status["phase"] == "Ready" and status["replicas"] == "3/3" and status["currentModelVersion"] == "9"
    assert conditions(status) == {"Ready": ("True", "AllComponentsReady"), "ModelLoaded": ("True", "ModelLoaded"), "Progressing": ("False", "Complete"), "Degraded": ("False", "AsExpected"), "EphemeralStorage": ("False", "Database")}
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


def test_long_names_are_refused_naming_the_field():
    assert name_errors("a" * 40) == []
    (error,) = name_errors("a" * 41)
    assert error.startswith("metadata.name: must be at most 40 characters long")


def test_the_analytics_store_must_be_chosen():
    database = {"stores": {"analytics": {"databaseUrlFrom": {"name": "db", "key": "url"}}}}
    ephemeral = {"stores": {"analytics": {"ephemeral": True}}}
    assert storage_errors(database) == storage_errors(ephemeral) == []
    assert is_ephemeral(ephemeral) and not is_ephemeral(database)
    for spec in ({}, {"stores": {"analytics": {}}}, {"stores": {"analytics": {"ephemeral": False}}}, {"stores": {"analytics": {**database["stores"]["analytics"], "ephemeral": True}}}):
        (error,) = storage_errors(spec)
        assert error.startswith("spec.stores.analytics: "), spec


def test_spec_problems_are_one_invalid_spec_naming_each_field(minimal_bot):
    assert spec_problems(minimal_bot) == []
    bad = copy.deepcopy(minimal_bot)
    bad["metadata"]["name"] = "x" * 41
    bad["spec"]["stores"] = {}
    bad["spec"]["rasa"] = {"replicas": 0}
    (problem,) = spec_problems(bad)
    assert problem.reason == "InvalidSpec"
    assert "metadata.name" in problem.message and "spec.stores.analytics" in problem.message and "spec.rasa.replicas" in problem.message


def test_which_problems_block_and_which_are_retried():
    missing, unavailable, invalid, failed = (Problem(r, "m") for r in ("SecretMissing", "APIUnavailable", "InvalidSpec", "ApplyFailed"))
    assert blocks_apply([missing]) and blocks_apply([invalid])
    assert not blocks_apply([unavailable, failed])
    assert retryable([missing]) and retryable([failed]) and retryable([unavailable, failed])
    assert not retryable([unavailable]) and not retryable([invalid]) and not retryable([])


def test_a_child_event_carries_the_last_problems_over():
    degraded = derive_status(BOT, {"rasa": ready()}, [Problem("SecretMissing", "one"), Problem("ApplyFailed", "two")], "t")
    carried = carried_problems(degraded)
    assert carried == [Problem("SecretMissing", "one; two")]
    # Deriving the status again from the carried problems changes nothing: no write.
    assert derive_status({**BOT, "status": degraded}, {"rasa": ready()}, carried, "t2") == degraded
    assert carried_problems(derive_status(BOT, {"rasa": ready()}, [], "t")) == []
    assert carried_problems(None) == []


def test_status_patch_removes_what_is_gone():
    old = {"phase": "Ready", "components": {"rasa": {"readyReplicas": 1}, "model-serving": {"readyReplicas": 1}}, "currentModelVersion": "1", "conditions": [{"type": "Ready"}]}
    new = {"phase": "Ready", "components": {"rasa": {"readyReplicas": 2}}, "conditions": [{"type": "Ready"}, {"type": "Degraded"}]}
    patch = status_patch(old, new)
    assert patch == {"phase": "Ready", "components": {"rasa": {"readyReplicas": 2}, "model-serving": None}, "currentModelVersion": None, "conditions": [{"type": "Ready"}, {"type": "Degraded"}]}
    assert status_patch({}, new) == new


def with_conditions(**kinds):
    return {"conditions": [{"type": kind, "status": status, "reason": reason, "message": message} for kind, (status, reason, message) in kinds.items()]}


def test_warnings_are_posted_when_a_problem_appears_or_changes():
    fine = with_conditions(Degraded=("False", "AsExpected", "no problems found"))
    bad = with_conditions(Degraded=("True", "APIUnavailable", "HorizontalPodAutoscaler needs autoscaling/v2"))
    worse = with_conditions(Degraded=("True", "APIUnavailable", "PodDisruptionBudget needs policy/v1"))
    assert warnings(fine, bad) == [("APIUnavailable", "HorizontalPodAutoscaler needs autoscaling/v2")]
    assert warnings({}, bad) == warnings(None, bad) == [("APIUnavailable", "HorizontalPodAutoscaler needs autoscaling/v2")]
    assert warnings(bad, bad) == []  # the same problem on every resync: posted once
    assert warnings(bad, worse) == [("APIUnavailable", "PodDisruptionBudget needs policy/v1")]
    assert warnings(bad, fine) == []
    ephemeral = with_conditions(EphemeralStorage=("True", "EmptyDir", EPHEMERAL_MESSAGE))
    assert warnings(fine, ephemeral) == [("EphemeralStorage", EPHEMERAL_MESSAGE)]
    assert warnings(ephemeral, ephemeral) == []


def test_an_ephemeral_bot_says_so_in_a_condition():
    bot = {**BOT, "spec": {**BOT["spec"], "stores": {"analytics": {"ephemeral": True}}}}
    status = derive_status(bot, {"rasa": ready()}, [], "t")
    ephemeral = next(c for c in status["conditions"] if c["type"] == "EphemeralStorage")
    assert (ephemeral["status"], ephemeral["reason"], ephemeral["message"]) == ("True", "EmptyDir", EPHEMERAL_MESSAGE)
    assert "lost on every pod restart" in EPHEMERAL_MESSAGE and "spec.stores.analytics.databaseUrlFrom" in EPHEMERAL_MESSAGE
    assert status["phase"] == "Ready"  # a warning, not a failure


def test_events_get_a_full_object_reference():
    # The Bot body in kopf's index has no apiVersion or kind.
    body = {"metadata": {"name": "b", "namespace": "n", "uid": "u", "labels": {"x": "y"}}, "spec": {}, "status": {}}
    assert bot_reference(body) == {"apiVersion": "botfleet.io/v1alpha1", "kind": "Bot", "metadata": {"name": "b", "namespace": "n", "uid": "u"}}
