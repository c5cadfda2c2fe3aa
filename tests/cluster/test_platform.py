"""botfleet on a real Kubernetes cluster (1.20, built from Debian's packages by
ci/cluster.py): the operator runs from its own image as charts/botfleet installs it,
and the Bots of k8s/examples become pods, from their own images, that hold a
conversation through their Services.

The tests run in file order and share one platform: later tests use the Bots earlier
ones created, as an operator's user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cluster_support
import pytest
import yaml
from cluster_support import audit_events, kubectl
from platform_support import (
    BOTS_NAMESPACE,
    MODEL_PORT,
    OPERATOR_NAMESPACE,
    OPERATOR_USER,
    RESYNC_SECONDS,
    ROOT,
    RUN,
    Conversations,
    Prometheus,
    crd_files,
    eventually,
    example_bot,
    get_json,
    model_ids,
    operator_objects,
    post_json,
    prepare_database,
    prometheus_query,
    say,
    serve_models,
    store_objects,
    train_models,
    train_variant,
)

READY_TIMEOUT = 900  # a cold node pulls nothing, but loads TensorFlow and torch on 2 cores
COMPONENTS = ("rasa", "actions", "model-serving", "gateway")
WRITES = {"create", "update", "patch", "delete", "deletecollection"}


@dataclass
class Platform:
    node_ip: str
    models: dict[str, str]

    def model_url(self, key: str) -> str:
        return f"http://{self.node_ip}:{MODEL_PORT}/{self.models[key]}"


def apply(objects: list[dict[str, Any]] | dict[str, Any], *flags: str) -> None:
    documents = objects if isinstance(objects, list) else [objects]
    kubectl("apply", *flags, "-f", "-", input=yaml.safe_dump_all(documents))


def get(kind: str, name: str, namespace: str = BOTS_NAMESPACE) -> dict[str, Any] | None:
    result = kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def items(kind: str, selector: str, namespace: str = BOTS_NAMESPACE) -> list[dict[str, Any]]:
    return json.loads(kubectl("get", kind, "-n", namespace, "-l", selector, "-o", "json").stdout)["items"]


def condition(bot: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for item in ((bot or {}).get("status") or {}).get("conditions") or []:
        if item["type"] == kind:
            return dict(item)
    return {}


def phase(name: str) -> str | None:
    return ((get("bot", name) or {}).get("status") or {}).get("phase")


def wait_ready(name: str, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        bot = get("bot", name)
        return bot if condition(bot, "Ready").get("status") == "True" else None

    try:
        return eventually(ready, timeout, interval=5, what=f"Bot {name} Ready")
    except AssertionError:
        print(kubectl("describe", "bot", name, "-n", BOTS_NAMESPACE, check=False).stdout)
        print(kubectl("get", "pods", "-n", BOTS_NAMESPACE, "-o", "wide", check=False).stdout)
        raise


def service_url(bot: str, component: str = "rasa", port: int = 5005) -> str:
    service = get("service", f"{bot}-{component}")
    assert service, f"no Service {bot}-{component}"
    return f"http://{service['spec']['clusterIP']}:{port}"


def api_token(bot: str, secret: str | None = None) -> str:
    import base64

    data = (get("secret", secret or f"{bot}-api-token") or {}).get("data") or {}
    return base64.b64decode(data["token"]).decode()


def operator_writes(since: float) -> list[dict[str, Any]]:
    """The operator's real writes since a moment: dry runs and kopf's peering heartbeat
    are not changes to anything a Bot owns."""
    return [
        e for e in audit_events(since_ts=since, user=OPERATOR_USER, verbs=WRITES)
        if "dryRun" not in e.get("requestURI", "") and "kopfpeerings" not in e.get("requestURI", "")
    ]


def bot_events(name: str) -> list[dict[str, Any]]:
    listed = kubectl("get", "events", "-n", BOTS_NAMESPACE, "--field-selector",
                     f"involvedObject.kind=Bot,involvedObject.name={name}", "-o", "json").stdout
    return list(json.loads(listed)["items"])


def delete_bot(name: str) -> None:
    kubectl("delete", "bot", name, "-n", BOTS_NAMESPACE, "--ignore-not-found", "--wait=false")


def children(name: str) -> dict[str, list[str]]:
    found = {}
    for kind in ("deployments", "services", "configmaps", "secrets", "networkpolicies", "ingresses", "pods"):
        names = [o["metadata"]["name"] for o in items(kind, f"botfleet.io/bot={name}")]
        if names:
            found[kind] = names
    return found


# --- the platform ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def platform(cluster: Any) -> Any:
    import images  # ci/images.py

    RUN.mkdir(parents=True, exist_ok=True)
    built = images.build_images()
    images.import_images()
    models = train_models(RUN / "models")
    server = serve_models(RUN / "models", cluster.node_ip)
    prepare_database()
    # A clean namespace: Bots, Secrets and Events of an earlier session on a kept
    # cluster would answer for this one.
    kubectl("delete", "namespace", BOTS_NAMESPACE, "--ignore-not-found", "--timeout=300s", timeout=330)
    for path in crd_files():
        # 1.20 knows no x-kubernetes-validations: kubectl refuses them client-side and
        # the server drops them, so the operator's own validation stands in for CEL.
        kubectl("apply", "--validate=false", "-f", str(path))
    kubectl("wait", "--for=condition=Established", "crd/bots.botfleet.io", "--timeout=60s")
    apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}})
    apply(store_objects(cluster.node_ip))
    apply([o for o in operator_objects(built["operator"]["id"]) if o["kind"] != "CustomResourceDefinition"])
    kubectl("rollout", "status", "deployment/botfleet-operator", "-n", OPERATOR_NAMESPACE, "--timeout=300s", timeout=330)
    yield Platform(node_ip=cluster.node_ip, models=models)
    for bot in json.loads(kubectl("get", "bots", "-n", BOTS_NAMESPACE, "-o", "json").stdout)["items"]:
        delete_bot(bot["metadata"]["name"])
    server.shutdown()


def minimal_bot(platform: Platform, name: str = "hello", **overrides: Any) -> dict[str, Any]:
    spec = {"model": {"url": platform.model_url("demo-diet"), "version": "1.0.0", "nluModelUrl": platform.model_url("nlu")}}
    return example_bot("minimal-bot.yaml", name, **{**spec, **overrides})


# --- the operator itself --------------------------------------------------------------


def operator_pods() -> list[dict[str, Any]]:
    """The operator's pods that are not on their way out (a rollout leaves some behind)."""
    pods = items("pods", "app.kubernetes.io/name=botfleet-operator", OPERATOR_NAMESPACE)
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def test_the_operator_runs_two_replicas_from_its_own_image(platform):
    eventually(lambda: len(operator_pods()) == 2, 120, what="two operator pods")
    for pod in operator_pods():
        assert pod["spec"]["containers"][0]["image"] == "botfleet/operator:0.1.0"
        assert all(s["ready"] for s in pod["status"]["containerStatuses"])
        assert pod["spec"]["serviceAccountName"] == "botfleet-operator"


# --- the minimal Bot --------------------------------------------------------------------


def test_the_minimal_bot_becomes_ready_with_every_pod_ready_on_its_probe(platform):
    apply(minimal_bot(platform))
    bot = wait_ready("hello")
    assert bot["status"]["phase"] == "Ready"
    assert set(bot["status"]["components"]) == set(COMPONENTS)
    pods = items("pods", "botfleet.io/bot=hello")
    assert {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods} == set(COMPONENTS)
    for pod in pods:
        assert pod["status"]["phase"] == "Running"
        assert all(s["ready"] for s in pod["status"]["containerStatuses"]), pod["metadata"]["name"]
    # No database named: the Bot says so, as a condition and a Warning event.
    assert condition(bot, "EphemeralStorage").get("status") == "True"


def test_the_minimal_bot_holds_a_conversation_through_its_service(platform):
    rasa = service_url("hello")
    sender = f"k8s-{uuid.uuid4().hex[:8]}"
    assert say(rasa, sender, "hello")
    # The flight form runs through the action server (slot validation) and Redis.
    assert say(rasa, sender, "I want to fly to Berlin") == ["What date would you like to travel?"]
    assert "passengers" in " ".join(say(rasa, sender, "next friday")).lower()


def test_channels_reach_rasa_through_the_gateway_which_keeps_the_conversation_in_redis(platform):
    gateway = service_url("hello", "gateway", 8080)
    sender = f"k8s-gw-{uuid.uuid4().hex[:8]}"
    assert say(gateway, sender, "I want to fly to Berlin") == ["What date would you like to travel?"]
    # The gateway recorded the conversation's track under the Bot's key prefix.
    keys = subprocess.run(["redis-cli", "--scan", "--pattern", f"*gateway:track:*{sender}"], capture_output=True, text=True, check=True).stdout.split()
    assert len(keys) == 1, keys
    # A malformed body is the caller's mistake: a 4xx from the gateway, never a 5xx.
    request = urllib.request.Request(f"{gateway}/webhooks/rest/webhook", data=b"{not json", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert 400 <= refused.value.code < 500


def test_rasas_api_needs_the_token_the_operator_generated(platform):
    rasa = service_url("hello")
    status, _ = get_json(f"{rasa}/status")
    assert status == 401
    status, body = get_json(f"{rasa}/status?token={api_token('hello')}")
    assert status == 200 and body["model_id"], body
    secret = get("secret", "hello-api-token")
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "Bot"


def test_model_serving_got_its_model_the_way_the_chart_says(platform):
    (pod,) = items("pods", "botfleet.io/bot=hello,app.kubernetes.io/component=model-serving")
    logs = kubectl("logs", pod["metadata"]["name"], "-n", BOTS_NAMESPACE, "-c", "fetch-model").stdout
    assert "fetched" in logs and platform.models["nlu"] in (RUN / "model-server.log").read_text()
    status, body = post_json(f"{service_url('hello', 'model-serving', 3000)}/classify", {"texts": ["I want to fly to Berlin"]})
    assert status == 200 and body[0]["intent"]["name"] == "book_flight", body


# --- what the operator does on the real API server ---------------------------------------


def test_steady_state_sends_no_writes(platform):
    wait_ready("hello")
    time.sleep(10)  # let the last status write after Ready land
    since = time.time()
    time.sleep(60)
    writes = operator_writes(since)
    assert writes == [], [(e["verb"], e["requestURI"]) for e in writes]


def test_drift_is_restored_and_the_event_is_on_the_bot(platform):
    kubectl("set", "env", "deployment/hello-actions", "-n", BOTS_NAMESPACE, "LOG_LEVEL=DEBUG")

    def restored() -> bool:
        deployment = get("deployment", "hello-actions")
        env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        return env["LOG_LEVEL"] == "INFO"

    eventually(restored, RESYNC_SECONDS + 30, what="hello-actions restored")
    events = eventually(lambda: [e for e in bot_events("hello") if e["reason"] == "Restored"], 30, what="a Restored event")
    assert events[0]["involvedObject"]["apiVersion"] == "botfleet.io/v1alpha1"
    assert "Restored" in kubectl("describe", "bot", "hello", "-n", BOTS_NAMESPACE).stdout


def test_a_field_removed_from_the_bot_leaves_its_child(platform):
    ingress = {"enabled": True, "host": "hello.bots.example.com", "annotations": {"a.example.com/keep": "1", "a.example.com/drop": "2"}}
    kubectl("patch", "bot", "hello", "-n", BOTS_NAMESPACE, "--type=merge", "-p", json.dumps({"spec": {"ingress": ingress}}))
    annotations = lambda: ((get("ingress", "hello") or {}).get("metadata") or {}).get("annotations") or {}  # noqa: E731
    eventually(lambda: annotations().get("a.example.com/drop") == "2", 60, what="Ingress with both annotations")
    kubectl("patch", "bot", "hello", "-n", BOTS_NAMESPACE, "--type=json", "-p",
            json.dumps([{"op": "remove", "path": "/spec/ingress/annotations/a.example.com~1drop"}]))
    eventually(lambda: "a.example.com/drop" not in annotations() and "a.example.com/keep" in annotations(), 60,
               what="the removed annotation gone from the Ingress")


def test_a_disabled_ingress_is_deleted(platform):
    kubectl("patch", "bot", "hello", "-n", BOTS_NAMESPACE, "--type=merge", "-p", json.dumps({"spec": {"ingress": {"enabled": False}}}))
    eventually(lambda: get("ingress", "hello") is None, 60, what="the Ingress deleted")


def peers() -> dict[str, dict[str, Any]]:
    """kopf's peering record: each operator's identity (user@pod/...) and priority."""
    listed = json.loads(kubectl("get", "clusterkopfpeerings", "-o", "json").stdout)["items"]
    assert len(listed) == 1, listed
    return dict(listed[0].get("status") or {})


def test_one_operator_is_active_and_the_other_takes_over(platform):
    pods = {p["metadata"]["name"] for p in operator_pods()}
    record = eventually(lambda: peers() if len(peers()) == 2 else None, 120, what="both operators in the peering record")
    by_pod = {next(pod for pod in pods if pod in identity): info["priority"] for identity, info in record.items()}
    assert len(set(by_pod.values())) == 2, f"equal priorities pause both operators: {by_pod}"
    active = max(by_pod, key=by_pod.__getitem__)
    standby = min(by_pod, key=by_pod.__getitem__)
    # The active one goes, and its replacement is scaled away before it can start, so
    # whatever is reconciled next is the standby's doing.
    kubectl("delete", "pod", active, "-n", OPERATOR_NAMESPACE, "--wait=false")
    kubectl("scale", "deployment/botfleet-operator", "-n", OPERATOR_NAMESPACE, "--replicas=1")
    eventually(lambda: {p["metadata"]["name"] for p in operator_pods()} == {standby}, 120, what=f"only {standby} left")
    # Gone, not just terminating: during its grace period it may still handle an event.
    eventually(lambda: get("pod", active, OPERATOR_NAMESPACE) is None, 120, what=f"{active} gone")
    since = time.time()
    ingress = {"enabled": True, "host": "hello.bots.example.com"}
    kubectl("patch", "bot", "hello", "-n", BOTS_NAMESPACE, "--type=merge", "-p", json.dumps({"spec": {"ingress": ingress}}))
    eventually(lambda: get("ingress", "hello"), 120, what="the Ingress created after the failover")
    reporters = {e.get("reportingInstance") for e in bot_events("hello")
                 if "Ingress" in e.get("message", "") and e["lastTimestamp"] >= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since - 1))}
    assert reporters == {standby}, reporters
    kubectl("patch", "bot", "hello", "-n", BOTS_NAMESPACE, "--type=merge", "-p", json.dumps({"spec": {"ingress": {"enabled": False}}}))
    eventually(lambda: get("ingress", "hello") is None, 60, what="the Ingress deleted again")
    kubectl("scale", "deployment/botfleet-operator", "-n", OPERATOR_NAMESPACE, "--replicas=2")
    kubectl("rollout", "status", "deployment/botfleet-operator", "-n", OPERATOR_NAMESPACE, "--timeout=300s", timeout=330)


def test_the_chart_rbac_is_enough(platform):
    refused = [e for e in audit_events(user=OPERATOR_USER, verbs=None) if (e.get("responseStatus") or {}).get("code") == 403]
    assert refused == [], [(e["verb"], e["requestURI"]) for e in refused]
    for pod in operator_pods():
        logs = kubectl("logs", pod["metadata"]["name"], "-n", OPERATOR_NAMESPACE, check=False).stdout
        assert "Forbidden" not in logs and "forbidden" not in logs, pod["metadata"]["name"]


def test_two_bots_on_one_redis_never_share_a_conversation(platform):
    apply(minimal_bot(platform, "hello-two", modelServing={"enabled": False}))
    wait_ready("hello-two")
    sender = f"shared-{uuid.uuid4().hex[:8]}"
    say(service_url("hello"), sender, "I want to fly to Berlin")
    say(service_url("hello-two"), sender, "hello")
    trackers = {}
    for bot in ("hello", "hello-two"):
        status, tracker = get_json(f"{service_url(bot)}/conversations/{sender}/tracker?token={api_token(bot)}")
        assert status == 200
        trackers[bot] = [e.get("text") for e in tracker["events"] if e["event"] == "user"]
    assert trackers == {"hello": ["I want to fly to Berlin"], "hello-two": ["hello"]}
    keys = subprocess.run(["redis-cli", "--scan", "--pattern", f"*{sender}"], capture_output=True, text=True, check=True).stdout.split()
    assert len({key.split(":")[0] for key in keys if ":tracker:" in key}) == 2, keys


def test_a_disabled_component_loses_its_children_and_its_status(platform):
    delete_bot("hello-two")
    kubectl("patch", "bot", "hello", "-n", BOTS_NAMESPACE, "--type=merge", "-p", json.dumps({"spec": {"modelServing": {"enabled": False}}}))
    eventually(lambda: not [n for names in children("hello").values() for n in names if "model-serving" in n], 120,
               what="model-serving's Deployment, Service, NetworkPolicy and pods deleted")
    bot = wait_ready("hello")
    assert set(bot["status"]["components"]) == {"rasa", "actions", "gateway"}
    assert bot["status"]["replicas"] == "3/3"


def test_a_degraded_bot_recovers_by_itself(platform):
    broken = minimal_bot(platform, "needs-secret", modelServing={"enabled": False},
                         channels=[{"type": "rest"}, {"type": "slack", "credentialsFrom": {"secretName": "needs-secret-slack"}}])
    apply(broken)
    try:
        recovers_by_itself()
    finally:
        delete_bot("needs-secret")


def recovers_by_itself() -> None:
    eventually(lambda: condition(get("bot", "needs-secret"), "Degraded").get("reason") == "SecretMissing", 60, what="Degraded")
    message = condition(get("bot", "needs-secret"), "Degraded")["message"]
    assert "spec.channels[1].credentialsFrom.secretName" in message
    kubectl("create", "secret", "generic", "needs-secret-slack", "-n", BOTS_NAMESPACE,
            "--from-literal=SLACK_TOKEN=xoxb-test", "--from-literal=SLACK_SIGNING_SECRET=s")
    # No edit of the Bot: the periodic re-reconcile finds the Secret.
    eventually(lambda: condition(get("bot", "needs-secret"), "Degraded").get("status") == "False", RESYNC_SECONDS * 2 + 30,
               what="Degraded=False without an edit")
    assert get("deployment", "needs-secret-rasa")


def test_names_at_the_length_limit(platform):
    longest = "a" * 34 + "-limit"  # 40 characters
    apply(minimal_bot(platform, longest, modelServing={"enabled": False}))
    eventually(lambda: get("deployment", f"{longest}-rasa") and get("service", f"{longest}-actions"), 60, what="children of a 40-character Bot")
    delete_bot(longest)
    result = kubectl("apply", "-f", "-", input=yaml.safe_dump(minimal_bot(platform, "b" * 41)), check=False)
    assert result.returncode != 0 and "metadata.name" in result.stderr, result.stderr


def test_a_kind_the_server_does_not_serve_is_one_condition_and_one_event(platform):
    before = time.time()
    autoscaled = minimal_bot(platform, "autoscaled", modelServing={"enabled": False},
                             actionServer={"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 2}})
    apply(autoscaled)
    try:
        one_condition_and_one_event(before)
    finally:
        delete_bot("autoscaled")


def one_condition_and_one_event(before: float) -> None:
    def unavailable() -> dict[str, Any]:
        bot = get("bot", "autoscaled")
        return next((c for c in (bot or {}).get("status", {}).get("conditions", []) if c.get("reason") == "APIUnavailable"), {})

    found = eventually(unavailable, 60, what="an APIUnavailable condition")
    assert "autoscaling/v2" in found["message"] and "1.23" in found["message"], found
    assert get("deployment", "autoscaled-actions")  # everything else is applied
    time.sleep(5)
    settled = time.time()
    time.sleep(RESYNC_SECONDS * 2 + 5)  # two resyncs: no storm, no second Event
    events = [e for e in bot_events("autoscaled") if e["reason"] == "APIUnavailable"]
    assert len(events) == 1 and events[0].get("count", 1) == 1, events
    assert events[0]["type"] == "Warning"
    # Nothing rewritten for the problem: no retries against the missing API, no status churn.
    # (Status writes are allowed: Rasa's pod may become ready meanwhile.)
    writes = [e for e in operator_writes(settled) if "autoscaled" in e.get("requestURI", "") and not e["requestURI"].split("?")[0].endswith("/status")]
    assert writes == [], [(e["verb"], e["requestURI"]) for e in writes]
    assert operator_writes(before)  # the window did see the operator's first writes


def test_deleting_the_bot_collects_every_child(platform):
    delete_bot("hello")
    eventually(lambda: get("bot", "hello") is None and not children("hello"), 180, what="every child of hello collected")


# --- the demo Bot, on the model-serving pipeline ------------------------------------------


def test_the_demo_bot_runs_and_its_intents_come_from_the_model_server(platform):
    for name in ("hello-two", "needs-secret", "autoscaled"):
        eventually(lambda: not children(name).get("pods"), 180, what=f"{name}'s pods gone")  # noqa: B023
    demo = example_bot("demo-bot.yaml", model={
        "url": platform.model_url("demo-botfleet"), "version": "2026.11.22",
        "nluModelUrl": platform.model_url("nlu"), "nluModelTag": platform.models["nlu_tag"],
    })
    apply(demo)
    # Two replicas want PodDisruptionBudgets, and 1.20 serves no policy/v1: the Bot says
    # so (APIUnavailable) and runs everything else.
    bot = eventually(lambda: (b := get("bot", "demo-support")) and b.get("status", {}).get("replicas") == "6/6"
                     and condition(b, "ModelLoaded").get("status") == "True" and b, READY_TIMEOUT, interval=5, what="demo-support 6/6")
    degraded = condition(bot, "Degraded")
    assert degraded.get("reason") == "APIUnavailable" and "policy/v1" in degraded["message"], degraded
    assert "autoscaling/v2" not in degraded["message"]
    rasa = service_url("demo-support")
    sender = f"demo-{uuid.uuid4().hex[:8]}"
    assert say(rasa, sender, "I want to fly to Berlin") == ["What date would you like to travel?"]
    token = api_token("demo-support", "demo-support-api")
    status, parsed = post_json(f"{rasa}/model/parse", {"text": "what is the status of my order"}, token=token)
    assert status == 200, parsed
    assert parsed["intent_source"]["classifier"] == "remote", parsed
    status, metrics = get_json(f"{service_url('demo-support', 'model-serving', 3000)}/metrics")
    assert status == 200 and "classify" in metrics


def test_the_demo_bot_stores_its_data_in_postgresql(platform):
    sender = f"demo-{uuid.uuid4().hex[:8]}"
    rasa = service_url("demo-support")
    say(rasa, sender, "I want to talk to a person")
    rows = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "botfleet_k8s", "-tAc",
                           f"select count(*) from handoffs where sender_id = '{sender}'"],
                          capture_output=True, text=True, check=True)
    assert rows.stdout.strip() == "1"
    delete_bot("demo-support")


# --- model rollouts: a canary of the demo model, judged by a real Prometheus ----------
#
# Two Rasa tracks run as pods of one Bot, the gateway keeps each conversation on one of
# them, Debian's Prometheus scrapes both (found through the API server, labelled as the
# ServiceMonitor labels them), and the operator in its pods queries it. A bad canary
# (the demo model with its fallback thresholds at 0.99 and 1.0) must be rolled back by the
# analysis alone; a good one (the same config, another seed) promoted.

ROLLOUT_TIMEOUT = 900


@pytest.fixture(scope="module")
def prometheus(platform: Platform) -> Any:
    server = Prometheus(platform.node_ip)
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def variants(platform: Platform) -> dict[str, str]:
    """The canaries: trained once per content of their inputs (about 2 minutes each)."""
    def falls_back(config: dict[str, Any]) -> None:
        for component in config["pipeline"]:
            if component["name"] == "FallbackClassifier":
                # Any two intents closer than 1.0 are "ambiguous": nearly every message
                # falls back, training phrases included.
                component["threshold"] = 0.99
                component["ambiguity_threshold"] = 1.0

    def reseeded(config: dict[str, Any]) -> None:
        for component in config["pipeline"] + config["policies"]:
            if "random_seed" in component:
                component["random_seed"] = 7

    models = RUN / "models"
    return {"bad": train_variant(models, "demo-falls-back", falls_back), "good": train_variant(models, "demo-reseeded", reseeded)}


def rollout_bot(platform: Platform, prometheus: str, model_file: str, version: str) -> dict[str, Any]:
    canary = {
        "maxWeight": 60,
        "steps": [{"setWeight": 30}, {"setWeight": 60}],
        "drainSeconds": 120,
        # The interval leaves room for the kubelet to bring the routing ConfigMap to
        # the gateway (up to about a minute): until then the canary gets no
        # conversations, and an analysis without data is inconclusive, not a failure.
        "analysis": {"interval": "40s", "threshold": 3, "prometheus": {"address": prometheus},
                     "metrics": [{"name": "fallback_rate"}, {"name": "action_error_rate"}]},
    }
    return minimal_bot(platform, "rollout", model={"url": f"http://{platform.node_ip}:{MODEL_PORT}/{model_file}", "version": version},
                       modelServing={"enabled": False}, rollout={"strategy": "Canary", "canary": canary})


def rollout_status() -> dict[str, Any]:
    return ((get("bot", "rollout") or {}).get("status") or {}).get("rollout") or {}


def rollout_cli(*args: str) -> tuple[int, Any]:
    result = subprocess.run([str(ROOT / ".venvs/operator/bin/python"), "-m", "botfleet_operator.rollout.cli", *args,
                             "-n", BOTS_NAMESPACE, "--json"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "KUBECONFIG": str(cluster_support.cluster_info().kubeconfig)})
    return result.returncode, json.loads(result.stdout or result.stderr or "null")


def served_model_id(url: str, token: str) -> str:
    status, body = get_json(f"{url}/status?token={token}")
    assert status == 200, body
    return str(body["model_id"])


def wait_rollout(phase: str, timeout: float = ROLLOUT_TIMEOUT) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        status = rollout_status()
        return status if status.get("phase") == phase else None

    try:
        return eventually(reached, timeout, interval=3, what=f"rollout {phase}")
    except AssertionError:
        print(json.dumps(rollout_status(), indent=2))
        print(kubectl("get", "pods", "-n", BOTS_NAMESPACE, "-o", "wide", check=False).stdout)
        raise


# Model ids met in the rollout tests: the failed canary's, for the next test.
MODEL_IDS: dict[str, str] = {}


def one_model_each(senders: list[str], token: str, before: float, moved_by_rollback: str | None = None) -> dict[str, str]:
    """Every conversation's model, as Rasa recorded it on its events before `before`;
    asserts none saw two. `moved_by_rollback`: a rolled-back canary's model; a
    conversation that began on it moved to stable by that rollback, as it should."""
    rasa = service_url("rollout")
    seen = {}
    for sender in senders:
        ids = set(model_ids(rasa, token, sender, before=before)) - {moved_by_rollback}
        assert len(ids) <= 1, f"conversation {sender} saw models {ids}"
        if ids:
            seen[sender] = ids.pop()
    return seen


def test_a_bad_canary_is_rolled_back_by_the_analysis_alone(platform, prometheus, variants):
    # The node has two cores: only this Bot's pods run now.
    for other in json.loads(kubectl("get", "bots", "-n", BOTS_NAMESPACE, "-o", "json").stdout)["items"]:
        delete_bot(other["metadata"]["name"])
    apply(rollout_bot(platform, prometheus, platform.models["demo-diet"], "1.0.0"))
    wait_ready("rollout")
    token = api_token("rollout")
    stable_id = served_model_id(service_url("rollout"), token)
    with Conversations(service_url("rollout", "gateway", 8080), f"bad-{uuid.uuid4().hex[:6]}") as users:
        apply(rollout_bot(platform, prometheus, variants["bad"], "2.0.0-bad"))
        eventually(lambda: rollout_status().get("phase") in ("Initializing", "Progressing"), 120, what="the rollout started")
        failed = wait_rollout("Failed")
        MODEL_IDS["failed"] = served_model_id(service_url("rollout", "rasa-canary"), token)  # draining, still up
        time.sleep(5)
    assert failed["failedChecks"] >= 3 and failed["canaryWeight"] == 0, failed
    assert failed["lastAnalysis"]["fallback_rate"]["status"] == "fail", failed
    assert failed["lastAnalysis"]["fallback_rate"]["value"] > failed["lastAnalysis"]["fallback_rate"]["stableValue"]
    bot = get("bot", "rollout")
    assert bot["status"]["stableModel"]["version"] == "1.0.0"
    stable = get("deployment", "rollout-rasa")
    assert stable["spec"]["template"]["metadata"]["annotations"]["botfleet.io/model-version"] == "1.0.0"
    reasons = {e["reason"]: e for e in bot_events("rollout")}
    assert "RolloutStarted" in reasons and reasons["RolloutFailed"]["type"] == "Warning"
    assert "fallback_rate" in reasons["RolloutFailed"]["message"]
    # Prometheus really saw both tracks of the Bot.
    tracks = {r["metric"]["track"] for r in prometheus_query(prometheus, 'botfleet_messages_total{bot="rollout", direction="in"}')}
    assert tracks == {"stable", "canary"}, tracks
    # Until the rollback, no conversation saw two models; both tracks had some.
    seen = one_model_each(users.senders, token, before=failed["finishedAt"])
    assert stable_id in seen.values() and len(set(seen.values())) == 2, set(seen.values())
    code, shown = rollout_cli("status", "rollout")
    assert code == 0 and shown["rollout"]["phase"] == "Failed"
    code, refused = rollout_cli("abort", "rollout")
    assert code == 1 and refused["error"] == "refused"


def test_a_good_canary_is_promoted_and_conversations_keep_their_track_across_a_gateway_restart(platform, prometheus, variants):
    token = api_token("rollout")
    prefix = f"good-{uuid.uuid4().hex[:6]}"
    with Conversations(service_url("rollout", "gateway", 8080), prefix) as users:
        apply(rollout_bot(platform, prometheus, variants["good"], "2.0.0"))
        wait_rollout("Progressing")
        code, paused = rollout_cli("pause", "rollout")
        assert code == 0 and paused["accepted"], paused
        eventually(lambda: rollout_status().get("pauseReason") == "Manual", 60, what="paused by the CLI")
        kubectl("delete", "pod", "-n", BOTS_NAMESPACE, "-l", "botfleet.io/bot=rollout,app.kubernetes.io/component=gateway", "--wait=false")
        assert rollout_cli("resume", "rollout")[0] == 0
        promoting = wait_rollout("Promoting")
        promoted_at = time.time()
        succeeded = wait_rollout("Succeeded")
    assert succeeded["canaryVersion"] == "2.0.0" and succeeded["failedChecks"] == 0, succeeded
    assert promoting["currentStep"] >= 1
    bot = get("bot", "rollout")
    assert bot["status"]["stableModel"]["version"] == "2.0.0"
    assert get("deployment", "rollout-rasa")["spec"]["template"]["metadata"]["annotations"]["botfleet.io/model-version"] == "2.0.0"
    # Until the promotion, every conversation (across the gateway's restart) stayed on one
    # model. The new canary had its share; the first conversations may have met the
    # failed canary, still draining for a gateway that had not yet read its rollback.
    seen = one_model_each(users.senders, token, before=promoted_at - 5, moved_by_rollback=MODEL_IDS.get("failed"))
    promoted_id = served_model_id(service_url("rollout"), token)
    assert promoted_id in seen.values() and len(set(seen.values())) >= 2, set(seen.values())
    reasons = {e["reason"] for e in bot_events("rollout")}
    assert {"RolloutPaused", "RolloutResumed", "RolloutSucceeded"} <= reasons, reasons
    delete_bot("rollout")


def test_paths_are_inside_the_run_dir():
    assert Path(RUN).is_relative_to(ROOT / ".run")
