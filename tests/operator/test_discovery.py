"""Which children an older API server cannot take, and what the Bot is told."""

from conftest import EXAMPLES
from test_builders import bot_from

from botfleet_operator.builders import desired_objects
from botfleet_operator.discovery import ServedVersions, api_problem, spec_field, split_by_api

# What Kubernetes 1.20's discovery lists (the groups the chart renders into).
KUBERNETES_1_20 = {"v1", "apps/v1", "networking.k8s.io/v1", "autoscaling/v1", "autoscaling/v2beta1", "autoscaling/v2beta2", "policy/v1beta1"}
KUBERNETES_1_30 = KUBERNETES_1_20 | {"autoscaling/v2", "policy/v1"}


def autoscaled_bot():
    bot = bot_from(next(p for p in EXAMPLES if p.stem == "minimal-bot"))
    bot["spec"]["rasa"] = {"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 4}}
    return bot


def test_everything_is_available_on_a_current_server():
    desired = desired_objects(autoscaled_bot())
    available, unavailable = split_by_api(desired, KUBERNETES_1_30)
    assert unavailable == [] and available == desired
    assert api_problem(unavailable) is None


def test_kubernetes_1_20_cannot_take_the_hpa_and_the_budget():
    desired = desired_objects(autoscaled_bot())
    available, unavailable = split_by_api(desired, KUBERNETES_1_20)
    assert sorted(o["kind"] for o in unavailable) == ["HorizontalPodAutoscaler", "PodDisruptionBudget"]
    assert {o["kind"] for o in available} >= {"ConfigMap", "Deployment", "Service", "NetworkPolicy"}
    problem = api_problem(unavailable)
    assert problem is not None and problem.reason == "APIUnavailable"
    assert problem.message == (
        "HorizontalPodAutoscaler hello-rasa needs autoscaling/v2, served from Kubernetes 1.23; this server does not serve it (spec.rasa.autoscaling.enabled); "
        "PodDisruptionBudget hello-rasa needs policy/v1, served from Kubernetes 1.21; this server does not serve it (spec.rasa.replicas > 1 or spec.rasa.autoscaling.enabled)"
    )


def test_spec_fields_name_what_asks_for_the_object():
    def obj(kind, component=None):
        labels = {"app.kubernetes.io/component": component} if component else {}
        return {"kind": kind, "metadata": {"name": "x", "labels": labels}}

    assert spec_field(obj("HorizontalPodAutoscaler", "actions")) == "spec.actionServer.autoscaling.enabled"
    assert spec_field(obj("Ingress")) == "spec.ingress.enabled"
    assert spec_field(obj("Deployment", "model-serving")) == "spec.modelServing"
    assert spec_field(obj("ConfigMap")) == "spec"


def test_discovery_is_asked_once_a_minute():
    now = [0.0]
    calls = []
    served = ServedVersions(ttl=60, clock=lambda: now[0])

    def fetch():
        calls.append(now[0])
        return {"v1"}

    assert served.get(fetch) == {"v1"}
    now[0] = 59
    served.get(fetch)
    now[0] = 61
    served.get(fetch)
    assert calls == [0.0, 61]
    served.clear()
    served.get(fetch)
    assert len(calls) == 3
