"""The operator (kopf, KopfRunner) against kmock's emulated Kubernetes API.

The emulator is kmock_support.ApplyingEmulator: kmock plus the server-side apply of a
single field manager (see there). These tests check the requests the operator sends
(applies with its field manager, dry runs, deletions, Events) and what the emulator
then stores; the field-ownership semantics of a real API server are for the
real-cluster tests."""

import asyncio
import contextlib
import copy
import datetime
import os
import socket
from pathlib import Path

import aiohttp
import pytest
from conftest import ROOT, load
from kmock_support import KUBERNETES_1_20, RESOURCES, ApplyingEmulator, applies, register_resources
from kopf.testing import KopfRunner

from botfleet_operator import discovery, drift, handlers, kube, reconcile

pytestmark = [pytest.mark.asyncio, pytest.mark.kmock(cls=ApplyingEmulator)]
NS = "bots"
BOTS = "/apis/botfleet.io/v1alpha1/namespaces/bots/bots"
BOT_RESOURCE = "botfleet.io/v1alpha1/bots"
RESYNC_SECONDS = 2
PEERING = {"kopf.dev/v1/clusterkopfpeerings": ("ClusterKopfPeering", False, set())}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def use(kmock, resources):
    register_resources(kmock, resources)
    os.environ.update(
        BOTFLEET_KUBE_API=str(kmock.url), BOTFLEET_METRICS_PORT=str(free_port()), BOTFLEET_METRICS_ADDRESS="127.0.0.1",
        BOTFLEET_RESYNC_SECONDS=str(RESYNC_SECONDS), BOTFLEET_RETRY_BASE_SECONDS="0.5",
    )
    # The operator's in-process state outlives one KopfRunner: start each test afresh.
    kube.api_client.cache_clear()
    discovery.SERVED.clear()
    reconcile._crd_cache.clear()
    drift.CACHE.clear()
    handlers.SCHEDULE.clear()
    handlers._phases.clear()
    handlers._published.clear()
    return kmock


@pytest.fixture
def emulator(kmock):
    return use(kmock, RESOURCES)


@pytest.fixture
def old_emulator(kmock):
    """What Kubernetes 1.20 serves: no autoscaling/v2, no policy/v1."""
    return use(kmock, KUBERNETES_1_20)


@pytest.fixture
def peering_emulator(kmock):
    return use(kmock, {**RESOURCES, **PEERING})


@contextlib.asynccontextmanager
async def operator(*args):
    """KopfRunner, entered and exited off the event loop: kmock serves kopf from this
    loop, so blocking it while the runner stops would deadlock."""
    login = Path(__file__).with_name("kmock_support.py")
    runner = KopfRunner(["run", "-A", *(args or ["--standalone"]), "-m", "botfleet_operator.handlers", str(login)])
    await asyncio.to_thread(runner.__enter__)
    try:
        yield runner
    finally:
        await asyncio.to_thread(runner.__exit__, None, None, None)


def stored(kmock, resource, name, namespace=NS):
    try:
        obj = kmock.objects[resource, namespace, name]
    except KeyError:
        return None
    return None if obj.deleted else dict(obj.raw)


async def eventually(check, timeout=20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.2)


def a_bot(name="hello", **spec):
    bot = copy.deepcopy(load(ROOT / "k8s/examples/minimal-bot.yaml"))
    # The emulator gives every write a new resourceVersion; kmock itself assigns no uid.
    bot["metadata"].update(name=name, namespace=NS, uid=f"uid-{name}")
    bot["spec"].update(spec)
    return bot


async def post(kmock, url, body):
    async with kmock.post(url, json=body) as response:
        assert response.status < 300, await response.text()


async def patch(kmock, url, body):
    async with kmock.patch(url, json=body) as response:
        assert response.status == 200, await response.text()


def condition(bot, kind):
    return next((c for c in (bot.get("status") or {}).get("conditions", []) if c["type"] == kind), {})


def the_bot(kmock, name="hello"):
    return stored(kmock, BOT_RESOURCE, name)


def events(kmock, reason=None):
    """The Events posted, from the request log (kmock keeps only the first of kopf's
    unnamed events in its store, and kopf posts its own log lines as events too)."""
    found = [r.data for r in kmock if r.resource is not None and r.resource.plural == "events" and r.method == "POST"]
    return [e for e in found if reason is None or e.get("reason") == reason]


def writes(kmock, since=0):
    """Requests that change something, after the first `since` requests: real applies,
    creates, deletes and merge patches (dry runs excluded)."""
    found = []
    for request in list(kmock)[since:]:
        if request.resource is None or request.resource.plural == "events":
            continue
        method = str(request.method).upper().rsplit(".", 1)[-1]
        if method in ("POST", "PUT", "DELETE") or (method == "PATCH" and "dryRun" not in request.params):
            found.append((method, request.resource.plural, request.name))
    return found


async def settled(kmock, quiet=1.5, timeout=20.0):
    """Waits until the operator has sent no request for `quiet` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    count = len(list(kmock))
    quiet_since = asyncio.get_running_loop().time()
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)
        now = len(list(kmock))
        if now != count:
            count, quiet_since = now, asyncio.get_running_loop().time()
        elif asyncio.get_running_loop().time() - quiet_since >= quiet:
            return count
    return count


async def ready_deployments(kmock, name="hello"):
    for component in ("rasa", "actions", "model-serving", "gateway"):
        await patch(kmock, f"/apis/apps/v1/namespaces/{NS}/deployments/{name}-{component}/status", {"status": {"readyReplicas": 1, "updatedReplicas": 1, "observedGeneration": 1}})


async def test_create_applies_children_and_status_follows_them(emulator):
    async with operator() as runner:
        await post(emulator, BOTS, a_bot())
        children = [("v1/configmaps", "hello-rasa"), ("v1/services", "hello-rasa"), ("apps/v1/deployments", "hello-actions"), ("networking.k8s.io/v1/networkpolicies", "hello-actions")]
        await eventually(lambda: all(stored(emulator, resource, name) for resource, name in children))
        rasa = stored(emulator, "apps/v1/deployments", "hello-rasa")
        assert rasa["metadata"]["ownerReferences"][0]["uid"] == "uid-hello"
        # Server-side apply: a PATCH with the apply content type, the operator's field
        # manager and force; children are never POSTed or merge-patched.
        sent = applies(emulator, dry_run=False)
        assert {r.name for r in sent} >= {"hello-rasa", "hello-actions", "hello-model-serving", "hello-gateway"}
        assert all(r.params.get("fieldManager") == "botfleet-operator" and r.params.get("force") == "true" for r in sent)
        assert not [w for w in writes(emulator) if w[0] == "POST" and w[1] not in ("secrets", "bots")]
        # The generated API token, created once, owned by the Bot.
        token = stored(emulator, "v1/secrets", "hello-api-token")
        assert token["metadata"]["ownerReferences"][0]["uid"] == "uid-hello" and token["data"]["token"]
        bot = await eventually(lambda: (b := the_bot(emulator)) and b.get("status", {}).get("phase") and b)
        assert bot["status"]["phase"] == "Progressing"
        assert condition(bot, "Ready")["status"] == "False" and condition(bot, "Degraded")["status"] == "False"
        await ready_deployments(emulator)
        bot = await eventually(lambda: (b := the_bot(emulator)) and b["status"]["phase"] == "Ready" and b)
        assert condition(bot, "Ready")["status"] == "True" and condition(bot, "ModelLoaded")["status"] == "True"
        assert bot["status"]["currentModelVersion"] == "1.0.0" and bot["status"]["replicas"] == "4/4"
        assert bot["status"]["endpoints"]["rest"] == "http://hello-gateway.bots.svc:8080/webhooks/rest/webhook"
        assert "reconcile_bot" not in bot["status"]  # handlers return nothing into status
        created = events(emulator, "Created")
        assert len(created) == 1 and "Secret hello-api-token" in created[0]["message"]
        assert created[0]["involvedObject"] == {"apiVersion": "botfleet.io/v1alpha1", "kind": "Bot", "name": "hello", "namespace": NS, "uid": "uid-hello"}
        # The minimal Bot keeps its data on an emptyDir: said once, as a Warning.
        ephemeral = events(emulator, "EphemeralStorage")
        assert len(ephemeral) == 1 and ephemeral[0]["type"] == "Warning" and "lost on every pod restart" in ephemeral[0]["message"]
        assert condition(bot, "EphemeralStorage")["status"] == "True"
        ops = f"http://127.0.0.1:{os.environ['BOTFLEET_METRICS_PORT']}"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{ops}/readyz") as response:
                assert response.status == 200
            async with session.get(f"{ops}/metrics") as response:
                text = await response.text()
        assert 'botfleet_operator_reconciles_total{result="ok"}' in text
        assert 'botfleet_operator_bots{phase="Ready"} 1.0' in text
        assert "botfleet_operator_reconcile_duration_seconds_bucket" in text
        assert 'botfleet_bot_ready{bot="hello",bot_namespace="bots"} 1.0' in text
        assert 'botfleet_bot_replicas_ready{bot="hello",bot_namespace="bots",component="rasa"} 1.0' in text
        assert 'botfleet_bot_info{bot="hello",bot_namespace="bots",model_version="1.0.0"} 1.0' in text
        assert 'botfleet_operator_child_writes_total{action="created",kind="Deployment"}' in text
    assert runner.exception is None


async def test_a_steady_state_sends_no_writes_across_resyncs(emulator):
    async with operator() as runner:
        await post(emulator, BOTS, a_bot())
        await eventually(lambda: stored(emulator, "apps/v1/deployments", "hello-rasa"))
        await ready_deployments(emulator)
        await eventually(lambda: (b := the_bot(emulator)) and b.get("status", {}).get("phase") == "Ready")
        start = await settled(emulator)
        await asyncio.sleep(RESYNC_SECONDS * 2.5)  # at least two resyncs of the Bot
        assert writes(emulator, since=start) == []
        resynced = [r for r in list(emulator)[start:] if r.resource is not None and r.resource.plural == "secrets"]
        assert resynced, "the Bot was not resynced"  # each resync checks its token Secret
        assert applies(emulator, since=start) == []  # not even a dry run
        assert len(events(emulator, "EphemeralStorage")) == 1
    assert runner.exception is None


async def test_spec_updates_reach_the_children_and_removed_fields_go(emulator):
    async with operator() as runner:
        await post(emulator, BOTS, a_bot(actionServer={"env": [{"name": "FEATURE", "value": "on"}]}, podTemplate={"annotations": {"team": "support"}}))
        await eventually(lambda: stored(emulator, "apps/v1/deployments", "hello-actions"))
        start = await settled(emulator)  # kmock logs a request once it has answered it
        await patch(emulator, f"{BOTS}/hello", {"spec": {"actionServer": {"replicas": 3, "env": None}, "podTemplate": None}, "metadata": {"generation": 2}})

        def updated():
            deployment = stored(emulator, "apps/v1/deployments", "hello-actions")
            return deployment["spec"]["replicas"] == 3 and deployment

        deployment = await eventually(updated)
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert "FEATURE" not in {e["name"] for e in container.get("env", [])}
        assert "team" not in deployment["spec"]["template"]["metadata"].get("annotations", {})
        # What was sent: the apply names no FEATURE and no annotation at all.
        (sent,) = [r for r in applies(emulator, dry_run=False, since=start) if r.resource.plural == "deployments" and r.name == "hello-actions"]
        # A spec change costs a dry run and an apply per changed child, no extra read.
        assert not [r for r in list(emulator)[start:] if str(r.method).endswith("GET") and r.resource is not None and r.resource.plural == "deployments" and r.name]
        assert "FEATURE" not in str(sent.data) and "team" not in str(sent.data)
        await eventually(lambda: any("Deployment hello-actions" in e["message"] for e in events(emulator, "Updated")))
    assert runner.exception is None


async def test_drift_is_corrected_and_said_so(emulator):
    async with operator() as runner:
        await post(emulator, BOTS, a_bot())
        await eventually(lambda: stored(emulator, "v1/services", "hello-rasa"))
        await settled(emulator)
        async with emulator.delete(f"/api/v1/namespaces/{NS}/services/hello-rasa") as response:
            assert response.status == 200
        await patch(emulator, f"/apis/apps/v1/namespaces/{NS}/deployments/hello-rasa", {"spec": {"replicas": 7}, "metadata": {"resourceVersion": "edited"}})
        await eventually(lambda: stored(emulator, "v1/services", "hello-rasa"))
        await eventually(lambda: stored(emulator, "apps/v1/deployments", "hello-rasa")["spec"]["replicas"] == 1)
        restored = await eventually(lambda: len(events(emulator, "Restored")) >= 2 and events(emulator, "Restored"))
        assert {e["involvedObject"]["kind"] for e in restored} == {"Bot"}  # kubectl describe bot lists them
        assert {e["involvedObject"]["uid"] for e in restored} == {"uid-hello"}
        # The edit was found by a dry run before the real apply.
        assert [r for r in applies(emulator, dry_run=True) if r.resource.plural == "deployments" and r.name == "hello-rasa"]
    assert runner.exception is None


async def test_children_no_longer_desired_are_pruned(emulator):
    async with operator() as runner:
        await post(emulator, BOTS, a_bot(ingress={"enabled": True, "host": "hello.example.com"}, rasa={"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 4}}))
        await eventually(lambda: stored(emulator, "networking.k8s.io/v1/ingresses", "hello") and stored(emulator, "autoscaling/v2/horizontalpodautoscalers", "hello-rasa"))
        await eventually(lambda: "components" in (the_bot(emulator).get("status") or {}))
        assert "model-serving" in the_bot(emulator)["status"]["components"]
        await patch(emulator, f"{BOTS}/hello", {"spec": {"ingress": {"enabled": False}, "rasa": {"autoscaling": {"enabled": False}}, "modelServing": {"enabled": False}}, "metadata": {"generation": 2}})
        await eventually(lambda: stored(emulator, "networking.k8s.io/v1/ingresses", "hello") is None)
        await eventually(lambda: stored(emulator, "autoscaling/v2/horizontalpodautoscalers", "hello-rasa") is None)
        await eventually(lambda: stored(emulator, "apps/v1/deployments", "hello-model-serving") is None)
        await eventually(lambda: stored(emulator, "v1/services", "hello-model-serving") is None)
        assert stored(emulator, "v1/secrets", "hello-api-token") is not None  # never pruned
        (pruned,) = await eventually(lambda: events(emulator, "Pruned"))
        assert "Ingress hello" in pruned["message"] and "HorizontalPodAutoscaler hello-rasa" in pruned["message"]
        await eventually(lambda: "model-serving" not in the_bot(emulator)["status"]["components"])
    assert runner.exception is None


async def test_missing_secret_degrades_then_recovers_by_resync(emulator):
    slack = {"channels": [{"type": "rest"}, {"type": "slack", "credentialsFrom": {"secretName": "slack-creds"}}]}
    async with operator() as runner:
        await post(emulator, BOTS, a_bot("chatty", **slack))
        bot = await eventually(lambda: (b := the_bot(emulator, "chatty")) and condition(b, "Degraded").get("status") == "True" and b)
        degraded = condition(bot, "Degraded")
        assert degraded["reason"] == "SecretMissing"
        assert "Secret 'slack-creds' referenced by spec.channels[1].credentialsFrom.secretName does not exist" in degraded["message"]
        assert bot["status"]["phase"] == "Degraded"
        assert stored(emulator, "apps/v1/deployments", "chatty-rasa") is None
        await asyncio.sleep(2.5)  # a few retries by the resync loop
        assert len(events(emulator, "SecretMissing")) == 1  # said once, not on every retry
        await post(emulator, f"/api/v1/namespaces/{NS}/secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "slack-creds", "namespace": NS}, "data": {}})
        await eventually(lambda: stored(emulator, "apps/v1/deployments", "chatty-rasa"), timeout=RESYNC_SECONDS * 3)
        await eventually(lambda: condition(the_bot(emulator, "chatty"), "Degraded").get("status") == "False")
    assert runner.exception is None


async def test_an_api_the_server_lacks_is_one_condition_and_one_event(old_emulator):
    emulator = old_emulator
    async with operator() as runner:
        await post(emulator, BOTS, a_bot(rasa={"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 4}}))
        bot = await eventually(lambda: (b := the_bot(emulator)) and condition(b, "Degraded").get("status") == "True" and b)
        degraded = condition(bot, "Degraded")
        assert degraded["reason"] == "APIUnavailable"
        assert "HorizontalPodAutoscaler hello-rasa needs autoscaling/v2, served from Kubernetes 1.23; this server does not serve it (spec.rasa.autoscaling.enabled)" in degraded["message"]
        assert "PodDisruptionBudget hello-rasa needs policy/v1" in degraded["message"]
        # Everything else is applied, and nothing is asked of the missing APIs.
        await eventually(lambda: stored(emulator, "apps/v1/deployments", "hello-rasa") and stored(emulator, "v1/services", "hello-rasa"))
        assert not [r for r in emulator if "horizontalpodautoscalers" in r.url.path or "poddisruptionbudgets" in r.url.path]
        start = await settled(emulator)
        await asyncio.sleep(RESYNC_SECONDS * 2.5)  # resyncs look again: no retry storm, no writes
        assert writes(emulator, since=start) == []
        assert len(events(emulator, "APIUnavailable")) == 1
    assert runner.exception is None  # kopf's watches of the unserved kinds did not break it


async def test_long_names_are_refused(emulator):
    name = "a-bot-with-a-name-longer-than-forty-characters"
    async with operator() as runner:
        await post(emulator, BOTS, a_bot(name))
        bot = await eventually(lambda: (b := the_bot(emulator, name)) and b.get("status", {}).get("phase") and b)
        assert bot["status"]["phase"] == "Failed" and condition(bot, "Degraded")["reason"] == "InvalidSpec"
        assert "metadata.name" in condition(bot, "Degraded")["message"]
        assert not [w for w in writes(emulator) if w[1] not in ("bots", "events")]
    assert runner.exception is None


async def test_deletion_is_never_blocked(emulator):
    async with operator() as runner:
        await post(emulator, BOTS, a_bot())
        await eventually(lambda: stored(emulator, "apps/v1/deployments", "hello-rasa"))
        await asyncio.sleep(RESYNC_SECONDS * 1.5)  # resyncs add no finalizer either
        assert not the_bot(emulator)["metadata"].get("finalizers")
        async with emulator.delete(f"{BOTS}/hello") as response:
            assert response.status == 200
        await eventually(lambda: the_bot(emulator) is None)
    assert runner.exception is None


def peer(priority, seconds_ago=0):
    lastseen = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds_ago)
    return {"priority": priority, "lifetime": 60, "lastseen": lastseen.isoformat()}


async def test_a_peer_of_higher_priority_pauses_the_operator_until_it_goes(peering_emulator):
    emulator = peering_emulator
    peering = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "botfleet-operator"}, "status": {"active-one": peer(10_000)}}
    await post(emulator, "/apis/kopf.dev/v1/clusterkopfpeerings", peering)
    async with operator("--peering=botfleet-operator", "--priority=100") as runner:
        # kopf records itself in the peering object and pauses for the live rival.
        await eventually(lambda: len(stored(emulator, "kopf.dev/v1/clusterkopfpeerings", "botfleet-operator", None)["status"]) == 2)
        await post(emulator, BOTS, a_bot())
        await asyncio.sleep(RESYNC_SECONDS * 1.5)
        assert stored(emulator, "apps/v1/deployments", "hello-rasa") is None and not the_bot(emulator).get("status")
        # The rival stops cleanly (kopf removes its own record): this one takes over.
        await patch(emulator, "/apis/kopf.dev/v1/clusterkopfpeerings/botfleet-operator", {"status": {"active-one": None}})
        await eventually(lambda: stored(emulator, "apps/v1/deployments", "hello-rasa"))
        await eventually(lambda: the_bot(emulator).get("status", {}).get("phase"))
    assert runner.exception is None
