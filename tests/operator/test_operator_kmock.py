"""The operator (kopf, KopfRunner) against kmock's emulated Kubernetes API."""

import asyncio
import contextlib
import copy
import os
import socket
from pathlib import Path

import aiohttp
import pytest
from conftest import ROOT, load
from kmock_support import register_resources
from kopf.testing import KopfRunner

from botfleet_operator import kube

pytestmark = pytest.mark.asyncio
NS = "bots"
BOTS = "/apis/botfleet.io/v1alpha1/namespaces/bots/bots"


@pytest.fixture
def emulator(kmock):
    register_resources(kmock)
    os.environ.update(BOTFLEET_KUBE_API=str(kmock.url), BOTFLEET_METRICS_PORT=str(free_port()), BOTFLEET_RETRY_BASE_SECONDS="1")
    kube.api_client.cache_clear()
    return kmock


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.asynccontextmanager
async def operator():
    """KopfRunner, entered and exited off the event loop: kmock serves kopf from this
    loop, so blocking it while the runner stops would deadlock."""
    login = Path(__file__).with_name("kmock_support.py")
    runner = KopfRunner(["run", "-A", "--standalone", "-m", "botfleet_operator.handlers", str(login)])
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
    # kmock assigns no resourceVersion, and kopf guards its own patches with a JSON-patch
    # test on it; a fixed one keeps those patches working.
    bot["metadata"].update(name=name, namespace=NS, uid=f"uid-{name}", resourceVersion="1")
    bot["spec"].update(spec)
    return bot


async def post(kmock, url, body):
    async with kmock.post(url, json=body) as response:
        assert response.status < 300, await response.text()


def condition(bot, kind):
    return next((c for c in (bot.get("status") or {}).get("conditions", []) if c["type"] == kind), {})


async def test_create_builds_children_and_status_follows_them(emulator):
    async with operator() as runner:
        await post(emulator, BOTS, a_bot())
        children = [("v1/configmaps", "hello-rasa"), ("v1/services", "hello-rasa"), ("apps/v1/deployments", "hello-actions"), ("networking.k8s.io/v1/networkpolicies", "hello-actions")]
        await eventually(lambda: all(stored(emulator, resource, name) for resource, name in children))
        rasa = stored(emulator, "apps/v1/deployments", "hello-rasa")
        assert rasa["metadata"]["ownerReferences"][0]["uid"] == "uid-hello"
        bot = await eventually(lambda: (b := stored(emulator, "botfleet.io/v1alpha1/bots", "hello")) and b.get("status", {}).get("phase") and b)
        assert bot["status"]["phase"] == "Progressing"
        assert condition(bot, "Ready")["status"] == "False" and condition(bot, "Degraded")["status"] == "False"
        # The deployments report ready pods: the status follows on the next resync.
        for component in ("rasa", "actions", "model-serving"):
            async with emulator.patch(f"/apis/apps/v1/namespaces/{NS}/deployments/hello-{component}/status", json={"status": {"readyReplicas": 1, "updatedReplicas": 1}}) as response:
                assert response.status == 200
        bot = await eventually(lambda: (b := stored(emulator, "botfleet.io/v1alpha1/bots", "hello")) and b["status"]["phase"] == "Ready" and b)
        assert condition(bot, "Ready")["status"] == "True" and condition(bot, "ModelLoaded")["status"] == "True"
        assert bot["status"]["currentModelVersion"] == "1.0.0" and bot["status"]["replicas"] == "3/3"
        assert bot["status"]["endpoints"]["rest"] == "http://hello-rasa.bots.svc:5005/webhooks/rest/webhook"
        assert "reconcile_bot" not in bot["status"]  # handlers return nothing into status
        # The request log, not the store: kmock keeps only the first of kopf's unnamed
        # events, and kopf also posts its own log lines as events.
        events = [r.data for r in emulator if r.resource is not None and r.resource.plural == "events" and r.method == "POST"]
        assert any(e.get("reason") == "Created" and e.get("involvedObject", {}).get("name") == "hello" for e in events)
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
    assert runner.exception is None


async def test_spec_updates_reach_the_children(emulator):
    async with operator() as runner:
        await post(emulator, BOTS, a_bot())
        await eventually(lambda: stored(emulator, "apps/v1/deployments", "hello-actions"))
        async with emulator.patch(f"{BOTS}/hello", json={"spec": {"actionServer": {"replicas": 3}}, "metadata": {"generation": 2}}) as response:
            assert response.status == 200
        await eventually(lambda: stored(emulator, "apps/v1/deployments", "hello-actions")["spec"]["replicas"] == 3)
    assert runner.exception is None


async def test_drift_is_corrected(emulator):
    async with operator() as runner:
        await post(emulator, BOTS, a_bot())
        await eventually(lambda: stored(emulator, "v1/services", "hello-rasa"))
        async with emulator.delete(f"/api/v1/namespaces/{NS}/services/hello-rasa") as response:
            assert response.status == 200
        async with emulator.patch(f"/apis/apps/v1/namespaces/{NS}/deployments/hello-rasa", json={"spec": {"replicas": 7}}) as response:
            assert response.status == 200
        await eventually(lambda: stored(emulator, "v1/services", "hello-rasa"))
        await eventually(lambda: stored(emulator, "apps/v1/deployments", "hello-rasa")["spec"]["replicas"] == 1)
    assert runner.exception is None


async def test_missing_secret_degrades_then_recovers(emulator):
    slack = {"channels": [{"type": "rest"}, {"type": "slack", "credentialsFrom": {"secretName": "slack-creds"}}]}
    async with operator() as runner:
        await post(emulator, BOTS, a_bot("chatty", **slack))
        bot = await eventually(lambda: (b := stored(emulator, "botfleet.io/v1alpha1/bots", "chatty")) and condition(b, "Degraded").get("status") == "True" and b)
        degraded = condition(bot, "Degraded")
        assert degraded["reason"] == "SecretMissing"
        assert "Secret 'slack-creds' referenced by spec.channels[1].credentialsFrom.secretName does not exist" in degraded["message"]
        assert bot["status"]["phase"] == "Degraded"
        assert stored(emulator, "apps/v1/deployments", "chatty-rasa") is None
        await post(emulator, f"/api/v1/namespaces/{NS}/secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "slack-creds", "namespace": NS}, "data": {}})
        await eventually(lambda: stored(emulator, "apps/v1/deployments", "chatty-rasa"))
        await eventually(lambda: condition(stored(emulator, "botfleet.io/v1alpha1/bots", "chatty"), "Degraded").get("status") == "False")
    assert runner.exception is None


async def test_deletion_is_never_blocked(emulator):
    async with operator() as runner:
        await post(emulator, BOTS, a_bot())
        await eventually(lambda: stored(emulator, "apps/v1/deployments", "hello-rasa"))
        assert not stored(emulator, "botfleet.io/v1alpha1/bots", "hello")["metadata"].get("finalizers")
        async with emulator.delete(f"{BOTS}/hello") as response:
            assert response.status == 200
        await eventually(lambda: stored(emulator, "botfleet.io/v1alpha1/bots", "hello") is None)
    assert runner.exception is None
