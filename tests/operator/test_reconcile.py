"""reconcile() and reconcile_child() over an in-memory API: which requests they make
and what they write. The kopf-and-kmock tests cover the same paths end to end; these
pin down the request economy that lets one operator manage 1,000 Bots."""

import copy

import pytest
from conftest import ROOT, load

from botfleet_operator import reconcile as reconciler
from botfleet_operator.kube import KubeError


class MemoryKube:
    """The four calls reconcile makes, over a dict, with the API server's 409 on a
    duplicate create. Records every call so tests can count round trips."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str | None, str], dict] = {}
        self.calls: list[tuple[str, str, str]] = []

    def get(self, kind, namespace, name):
        self.calls.append(("GET", kind, name))
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found else None

    def exists(self, kind, namespace, name):
        return self.get(kind, namespace, name) is not None

    def create(self, obj):
        key = (obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])
        self.calls.append(("POST", obj["kind"], obj["metadata"]["name"]))
        if key in self.objects:
            raise KubeError(409, "already exists")
        self.objects[key] = copy.deepcopy(obj)
        return obj

    def merge_patch(self, kind, namespace, name, patch, subresource=None):
        self.calls.append(("PATCH", kind, name))
        self.objects[(kind, namespace, name)].update(copy.deepcopy(patch))
        return self.objects[(kind, namespace, name)]

    def count(self, method, kind=None):
        return sum(1 for m, k, _ in self.calls if m == method and (kind is None or k == kind))


@pytest.fixture(autouse=True)
def no_crd_cache():
    reconciler._crd_cache.clear()


def a_bot():
    bot = copy.deepcopy(load(ROOT / "k8s/examples/minimal-bot.yaml"))
    bot["metadata"].update(namespace="bots", uid="uid-hello", generation=1)
    return bot


def test_a_new_bot_is_created_without_reading_its_children_first():
    kube = MemoryKube()
    outcome = reconciler.reconcile(kube, a_bot(), new=True)
    children = len(kube.objects)
    assert children >= 9 and not outcome.problems
    assert kube.count("POST") == children
    assert kube.count("GET") == 1 + 3  # the ServiceMonitor CRD, then the three Deployments
    assert [reason for reason, _ in outcome.events] == ["Created"]  # one Event, not one per child
    assert "Deployment hello-rasa" in outcome.events[0][1]


def test_a_conflict_on_create_falls_back_to_compare_and_patch():
    kube = MemoryKube()
    bot = a_bot()
    reconciler.reconcile(kube, bot, new=True)
    kube.objects[("Deployment", "bots", "hello-rasa")]["spec"]["replicas"] = 5
    kube.calls.clear()
    outcome = reconciler.reconcile(kube, bot, new=True)  # a retried create: children exist
    assert kube.count("PATCH", "Deployment") == 1
    assert kube.objects[("Deployment", "bots", "hello-rasa")]["spec"]["replicas"] == 1
    assert [reason for reason, _ in outcome.events] == ["Updated"]


def test_a_known_bot_reads_before_writing_and_writes_nothing_in_sync():
    kube = MemoryKube()
    bot = a_bot()
    reconciler.reconcile(kube, bot, new=True)
    kube.calls.clear()
    outcome = reconciler.reconcile(kube, bot)
    assert kube.count("POST") == 0 and kube.count("PATCH") == 0
    assert outcome.events == []


def test_the_crd_check_is_cached():
    kube = MemoryKube()
    bot = a_bot()
    reconciler.reconcile(kube, bot, new=True)
    reconciler.reconcile(kube, bot)
    assert kube.count("GET", "CustomResourceDefinition") == 1


def test_a_deleted_child_is_restored_alone():
    kube = MemoryKube()
    bot = a_bot()
    reconciler.reconcile(kube, bot, new=True)
    del kube.objects[("Service", "bots", "hello-rasa")]
    kube.calls.clear()
    outcome = reconciler.reconcile_child(kube, bot, "Service", "hello-rasa", None)
    assert ("Service", "bots", "hello-rasa") in kube.objects
    assert kube.count("POST") == 1 and kube.count("GET", "Service") == 0
    assert outcome is not None and outcome.events[0][0] == "Restored"


def test_an_edited_child_is_patched_back():
    kube = MemoryKube()
    bot = a_bot()
    reconciler.reconcile(kube, bot, new=True)
    live = copy.deepcopy(kube.objects[("ConfigMap", "bots", "hello-rasa")])
    live["data"] = {"endpoints.yml": "edited by hand"}
    kube.objects[("ConfigMap", "bots", "hello-rasa")] = live
    outcome = reconciler.reconcile_child(kube, bot, "ConfigMap", "hello-rasa", live)
    assert kube.objects[("ConfigMap", "bots", "hello-rasa")]["data"]["endpoints.yml"] != "edited by hand"
    assert outcome is not None and "drifted" in outcome.events[0][1]


def test_an_event_on_a_child_in_sync_costs_no_request():
    kube = MemoryKube()
    bot = a_bot()
    reconciler.reconcile(kube, bot, new=True)
    kube.calls.clear()
    live = kube.objects[("Service", "bots", "hello-rasa")]
    assert reconciler.reconcile_child(kube, bot, "Service", "hello-rasa", live) is None
    assert kube.calls == []


def test_a_deployment_event_refreshes_the_status():
    kube = MemoryKube()
    bot = a_bot()
    reconciler.reconcile(kube, bot, new=True)
    for component in ("rasa", "actions", "model-serving"):
        kube.objects[("Deployment", "bots", f"hello-{component}")]["status"] = {"readyReplicas": 1, "updatedReplicas": 1}
    live = kube.objects[("Deployment", "bots", "hello-rasa")]
    outcome = reconciler.reconcile_child(kube, bot, "Deployment", "hello-rasa", live)
    assert outcome is not None and outcome.status["phase"] == "Ready" and outcome.events == []


def test_degraded_or_invalid_bots_are_left_to_their_own_handler():
    kube = MemoryKube()
    bot = a_bot()
    reconciler.reconcile(kube, bot, new=True)
    degraded = {**bot, "status": {"conditions": [{"type": "Degraded", "status": "True"}]}}
    assert reconciler.reconcile_child(kube, degraded, "Service", "hello-rasa", None) is None
    invalid = copy.deepcopy(bot)
    invalid["spec"]["rasa"] = {"replicas": -1}
    assert reconciler.reconcile_child(kube, invalid, "Service", "hello-rasa", None) is None
    assert ("Service", "bots", "hello-rasa") in kube.objects  # untouched, not deleted


def test_a_labelled_object_the_bot_no_longer_wants_is_left_alone():
    kube = MemoryKube()
    bot = a_bot()
    reconciler.reconcile(kube, bot, new=True)
    kube.calls.clear()
    assert reconciler.reconcile_child(kube, bot, "Service", "hello-legacy", {"metadata": {"name": "hello-legacy"}}) is None
    assert kube.count("POST") == 0 and kube.count("PATCH") == 0


def test_a_failed_write_is_a_problem_not_a_crash():
    kube = MemoryKube()

    def refuse(obj):
        raise KubeError(403, "forbidden")

    kube.create = refuse
    outcome = reconciler.reconcile(kube, a_bot(), new=True)
    assert outcome.problems and all(p.reason == "ApplyFailed" for p in outcome.problems)
    assert outcome.status["phase"] == "Degraded" and outcome.retryable
