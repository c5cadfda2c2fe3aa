"""reconcile() and reconcile_child() over an in-memory API: which requests they make
and what they write. The kopf-and-kmock tests cover the same paths end to end; these
pin down the request economy that lets one operator manage 1,000 Bots, and that a
steady state costs no write at all."""

import copy
import itertools

import jsonpatch
import pytest
from conftest import ROOT, load
from kmock_support import server_apply

from botfleet_operator import discovery, drift
from botfleet_operator import reconcile as reconciler
from botfleet_operator.kube import RESOURCES, KubeError

CURRENT = {"v1", "apps/v1", "networking.k8s.io/v1", "autoscaling/v2", "policy/v1", "apiextensions.k8s.io/v1", "botfleet.io/v1alpha1"}
KUBERNETES_1_20 = (CURRENT - {"autoscaling/v2", "policy/v1"}) | {"autoscaling/v2beta2", "policy/v1beta1"}


class MemoryKube:
    """The calls reconcile makes, over a dict, with the API server's answers: 409 on a
    duplicate create, server-side apply as kmock_support emulates it (normalising
    what it stores), dry runs that change nothing. Records every call so tests can
    count round trips."""

    def __init__(self, served=CURRENT) -> None:
        self.objects: dict[tuple[str, str | None, str], dict] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.served = set(served)
        self.versions = itertools.count(1)

    def get(self, kind, namespace, name):
        self.calls.append(("GET", kind, name))
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found else None

    def exists(self, kind, namespace, name):
        return self.get(kind, namespace, name) is not None

    def list_objects(self, kind, namespace, labels):
        self.calls.append(("LIST", kind, ""))
        return [
            copy.deepcopy(o) for (k, ns, _), o in self.objects.items()
            if k == kind and ns == namespace and labels.items() <= (o["metadata"].get("labels") or {}).items()
        ]

    def create(self, obj):
        key = (obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])
        self.calls.append(("POST", obj["kind"], obj["metadata"]["name"]))
        if key in self.objects:
            raise KubeError(409, "already exists")
        stored = copy.deepcopy(obj)
        stored["metadata"].setdefault("uid", f"uid-{next(self.versions)}")
        self.objects[key] = stored
        return stored

    def apply(self, obj, dry_run=False):
        key = (obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"])
        self.calls.append(("DRYRUN" if dry_run else "APPLY", obj["kind"], obj["metadata"]["name"]))
        if RESOURCES[obj["kind"]].group_version not in self.served:
            raise KubeError(404, "the server could not find the requested resource")
        result = server_apply(self.objects.get(key), obj, "botfleet-operator", str(next(self.versions)))
        if not dry_run:
            self.objects[key] = copy.deepcopy(result)
        return result

    def delete(self, kind, namespace, name, uid=None):
        self.calls.append(("DELETE", kind, name))
        found = self.objects.get((kind, namespace, name))
        if found is None:
            return None
        if uid and found["metadata"].get("uid") != uid:
            raise KubeError(409, "Precondition failed: UID in precondition")
        return self.objects.pop((kind, namespace, name))

    def json_patch(self, kind, namespace, name, operations):
        self.calls.append(("JSONPATCH", kind, name))
        stored = self.objects[(kind, namespace, name)]
        self.objects[(kind, namespace, name)] = jsonpatch.apply_patch(stored, operations)  # a failed test raises
        self.objects[(kind, namespace, name)]["metadata"]["resourceVersion"] = str(next(self.versions))
        return copy.deepcopy(self.objects[(kind, namespace, name)])

    def merge_patch(self, kind, namespace, name, patch, subresource=None):
        self.calls.append(("PATCH", kind, name))
        self.objects[(kind, namespace, name)].update(copy.deepcopy(patch))
        return self.objects[(kind, namespace, name)]

    def served_group_versions(self):
        self.calls.append(("GET", "discovery", ""))
        return set(self.served)

    def count(self, method, kind=None):
        return sum(1 for m, k, _ in self.calls if m == method and (kind is None or k == kind))

    def writes(self):
        return [(m, k, n) for m, k, n in self.calls if m in ("APPLY", "POST", "DELETE", "PATCH", "JSONPATCH")]

    def children(self):
        """What kopf's children index would hold."""
        return [drift.live_child(o) for (k, _, _), o in self.objects.items() if k in reconciler.CHILD_KINDS]

    def live(self, kind, name):
        return self.objects[(kind, "bots", name)]


@pytest.fixture(autouse=True)
def fresh_caches():
    reconciler._crd_cache.clear()
    discovery.SERVED.clear()
    drift.CACHE.clear()


def a_bot(**spec):
    bot = copy.deepcopy(load(ROOT / "k8s/examples/minimal-bot.yaml"))
    bot["metadata"].update(namespace="bots", uid="uid-hello", generation=1)
    bot["spec"].update(spec)
    return bot


def reconcile(kube, bot, **kwargs):
    return reconciler.reconcile(kube, bot, children=kube.children, **kwargs)


def test_a_new_bot_is_applied_without_reading_its_children_first():
    kube = MemoryKube()
    outcome = reconciler.reconcile(kube, a_bot(), new=True)
    children = [key for key in kube.objects if key[0] != "Secret"]
    assert len(children) >= 9 and not outcome.problems
    assert kube.count("APPLY") == len(children) and kube.count("DRYRUN") == 0 and kube.count("LIST") == 0
    # discovery, the ServiceMonitor CRD, the token Secret, then the four Deployments
    assert kube.count("GET") == 1 + 1 + 1 + 4
    assert [reason for reason, _ in outcome.events] == ["Created"]  # one Event, not one per child
    assert "Deployment hello-rasa" in outcome.events[0][1] and "Secret hello-api-token" in outcome.events[0][1]


def test_the_steady_state_sends_no_write_and_then_no_request():
    kube = MemoryKube()
    bot = a_bot()
    reconcile(kube, bot, new=True)
    kube.calls.clear()
    outcome = reconcile(kube, bot)
    # The objects the server stores are normalised (no empty env values, quantities
    # as strings), unlike the rendered ones: compared dry run to live, they are in sync.
    assert kube.writes() == [] and outcome.events == []
    kube.calls.clear()
    reconcile(kube, bot)
    assert kube.count("DRYRUN") == 0 and kube.writes() == []  # remembered as in sync


def test_a_status_only_change_needs_no_dry_run():
    kube = MemoryKube()
    bot = a_bot()
    reconcile(kube, bot, new=True)
    reconcile(kube, bot)
    deployment = kube.live("Deployment", "hello-rasa")
    deployment["status"] = {"readyReplicas": 1}
    deployment["metadata"]["resourceVersion"] = "999"
    kube.calls.clear()
    assert reconciler.reconcile_child(kube, bot, "Deployment", "hello-rasa", copy.deepcopy(deployment)) is not None
    assert kube.count("DRYRUN") == 0 and kube.writes() == []


def test_the_crd_check_and_discovery_are_cached():
    kube = MemoryKube()
    bot = a_bot()
    reconcile(kube, bot, new=True)
    reconcile(kube, bot)
    assert kube.count("GET", "CustomResourceDefinition") == 1
    assert kube.count("GET", "discovery") == 1


def test_an_edited_child_is_restored_and_said_so():
    kube = MemoryKube()
    bot = a_bot()
    reconcile(kube, bot, new=True)
    live = kube.live("ConfigMap", "hello-rasa")
    live["data"] = {"endpoints.yml": "edited by hand"}
    live["metadata"]["resourceVersion"] = "500"
    kube.calls.clear()
    outcome = reconciler.reconcile_child(kube, bot, "ConfigMap", "hello-rasa", copy.deepcopy(live))
    assert kube.live("ConfigMap", "hello-rasa")["data"]["endpoints.yml"] != "edited by hand"
    assert kube.count("DRYRUN") == 1 and kube.count("APPLY") == 1
    assert outcome is not None and outcome.events == [("Restored", "restored ConfigMap hello-rasa, which had drifted from the Bot's spec or been deleted")]


def test_a_deleted_child_is_restored_alone():
    kube = MemoryKube()
    bot = a_bot()
    kube.objects[("Bot", "bots", "hello")] = copy.deepcopy(bot)
    reconcile(kube, bot, new=True)
    del kube.objects[("Service", "bots", "hello-rasa")]
    kube.calls.clear()
    outcome = reconciler.reconcile_child(kube, bot, "Service", "hello-rasa", None)
    assert ("Service", "bots", "hello-rasa") in kube.objects
    assert kube.count("APPLY") == 1 and kube.count("DRYRUN") == 0
    assert kube.count("GET", "Bot") == 1  # the Bot is still there: not a garbage collection
    assert outcome is not None and outcome.events[0][0] == "Restored"


def test_children_deleted_after_their_bot_are_not_recreated():
    kube = MemoryKube()
    bot = a_bot()  # not stored: the Bot is gone, the garbage collector deletes its children
    reconcile(kube, bot, new=True)
    del kube.objects[("Service", "bots", "hello-rasa")]
    assert reconciler.reconcile_child(kube, bot, "Service", "hello-rasa", None) is None
    assert ("Service", "bots", "hello-rasa") not in kube.objects


def test_an_event_on_a_child_in_sync_costs_no_request():
    kube = MemoryKube()
    bot = a_bot()
    reconcile(kube, bot, new=True)
    kube.calls.clear()
    live = kube.live("Service", "hello-rasa")
    assert reconciler.reconcile_child(kube, bot, "Service", "hello-rasa", copy.deepcopy(live)) is None
    assert kube.calls == []


def test_a_spec_change_updates_and_removes_fields():
    kube = MemoryKube()
    bot = a_bot(rasa={"env": [{"name": "FEATURE", "value": "on"}]}, podTemplate={"annotations": {"team": "support"}})
    reconcile(kube, bot, new=True)
    changed = a_bot()
    changed["metadata"]["generation"] = 2
    kube.calls.clear()
    outcome = reconcile(kube, changed)
    rasa = kube.live("Deployment", "hello-rasa")
    container = rasa["spec"]["template"]["spec"]["containers"][0]
    assert "FEATURE" not in {e["name"] for e in container["env"]}
    assert "team" not in rasa["spec"]["template"]["metadata"]["annotations"]
    assert ("Updated", "updated Deployment hello-actions, Deployment hello-gateway, Deployment hello-model-serving, Deployment hello-rasa to the Bot's spec") in outcome.events


def test_replicas_are_left_to_the_hpa_while_autoscaling_is_on():
    kube = MemoryKube()
    bot = a_bot(rasa={"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 4}})
    reconcile(kube, bot, new=True)
    applied = [o for o in reconciler.builders.desired_objects(bot) if o["kind"] == "Deployment" and o["metadata"]["name"] == "hello-rasa"][0]
    assert "replicas" not in applied["spec"]
    kube.live("Deployment", "hello-rasa")["spec"]["replicas"] = 3  # the HPA scaled it
    kube.live("Deployment", "hello-rasa")["status"] = {"readyReplicas": 3, "updatedReplicas": 3}
    kube.calls.clear()
    outcome = reconcile(kube, bot)
    assert kube.live("Deployment", "hello-rasa")["spec"]["replicas"] == 3 and kube.writes() == []
    assert outcome.status["components"]["rasa"] == {"desiredReplicas": 3, "readyReplicas": 3}


def test_children_no_longer_desired_are_pruned_with_one_event():
    kube = MemoryKube()
    bot = a_bot(
        ingress={"enabled": True, "host": "hello.example.com"},
        rasa={"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 4}},
    )
    reconcile(kube, bot, new=True)
    assert ("Ingress", "bots", "hello") in kube.objects and ("HorizontalPodAutoscaler", "bots", "hello-rasa") in kube.objects
    # Not the Bot's: another owner, and an object nobody owns, both labelled alike.
    foreign = copy.deepcopy(kube.live("Ingress", "hello"))
    foreign["metadata"].update(name="hello-foreign", uid="other", ownerReferences=[{"kind": "Bot", "name": "hello", "uid": "old-uid", "controller": True}])
    kube.objects[("Ingress", "bots", "hello-foreign")] = foreign
    manual = copy.deepcopy(foreign)
    manual["metadata"].update(name="hello-manual", uid="manual", ownerReferences=[])
    kube.objects[("Ingress", "bots", "hello-manual")] = manual
    plain = a_bot(modelServing={"enabled": False})
    plain["metadata"]["generation"] = 2
    outcome = reconcile(kube, plain)
    gone = {("Ingress", "bots", "hello"), ("HorizontalPodAutoscaler", "bots", "hello-rasa"), ("Deployment", "bots", "hello-model-serving"),
            ("Service", "bots", "hello-model-serving"), ("NetworkPolicy", "bots", "hello-model-serving"), ("PodDisruptionBudget", "bots", "hello-rasa")}
    assert not gone & set(kube.objects)
    assert {("Ingress", "bots", "hello-foreign"), ("Ingress", "bots", "hello-manual"), ("Secret", "bots", "hello-api-token")} <= set(kube.objects)
    pruned = [message for reason, message in outcome.events if reason == "Pruned"]
    assert len(pruned) == 1 and "Ingress hello" in pruned[0] and "Deployment hello-model-serving" in pruned[0]
    assert "model-serving" not in outcome.status["components"]


def test_pruning_without_an_index_lists_by_label():
    kube = MemoryKube()
    reconciler.reconcile(kube, a_bot(ingress={"enabled": True, "host": "hello.example.com"}), new=True)
    kube.calls.clear()
    reconciler.reconcile(kube, a_bot())
    assert kube.count("LIST") == len(reconciler.CHILD_KINDS) - 1  # no ServiceMonitor CRD
    assert ("Ingress", "bots", "hello") not in kube.objects


def test_a_child_missing_from_a_lagging_index_is_read_not_rewritten():
    kube = MemoryKube()
    bot = a_bot()
    reconcile(kube, bot, new=True)
    kube.calls.clear()
    outcome = reconciler.reconcile(kube, bot, children=list)  # an index that saw nothing yet
    assert kube.count("APPLY") == 0 and outcome.events == []


def test_an_api_the_server_does_not_serve_is_one_problem_and_the_rest_is_applied():
    kube = MemoryKube(served=KUBERNETES_1_20)
    bot = a_bot(rasa={"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 4}})
    outcome = reconcile(kube, bot, new=True)
    assert [p.reason for p in outcome.problems] == ["APIUnavailable"]
    assert "HorizontalPodAutoscaler hello-rasa needs autoscaling/v2, served from Kubernetes 1.23; this server does not serve it (spec.rasa.autoscaling.enabled)" in outcome.problems[0].message
    assert not outcome.retryable  # the resync looks again; no retry loop
    assert ("Deployment", "bots", "hello-rasa") in kube.objects and ("HorizontalPodAutoscaler", "bots", "hello-rasa") not in kube.objects
    assert not [c for c in kube.calls if c[1] in ("HorizontalPodAutoscaler", "PodDisruptionBudget")]
    degraded = next(c for c in outcome.status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "APIUnavailable")
    kube.calls.clear()
    again = reconcile(kube, {**bot, "status": outcome.status})
    assert again.status == outcome.status and kube.writes() == []


def test_long_names_are_refused():
    kube = MemoryKube()
    bot = a_bot()
    bot["metadata"]["name"] = "a-bot-whose-name-is-longer-than-forty-chars"
    outcome = reconcile(kube, bot)
    assert [p.reason for p in outcome.problems] == ["InvalidSpec"] and "metadata.name" in outcome.problems[0].message
    assert kube.writes() == [] and outcome.status["phase"] == "Failed"
    # Nothing of the Bot whose children its truncated name would share is reported.
    assert outcome.status["components"] == {} and outcome.status["endpoints"] == {} and kube.count("GET", "Deployment") == 0


def test_the_analytics_store_must_be_chosen():
    kube = MemoryKube()
    bot = a_bot(stores={})
    outcome = reconcile(kube, bot)
    assert [p.reason for p in outcome.problems] == ["InvalidSpec"] and "spec.stores.analytics" in outcome.problems[0].message
    assert kube.writes() == []


def test_the_api_token_secret_is_made_once_and_never_overwritten():
    kube = MemoryKube()
    bot = a_bot()
    reconcile(kube, bot, new=True)
    secret = kube.live("Secret", "hello-api-token")
    token = secret["data"]["token"]
    assert len(reconciler.builders.base64.b64decode(token)) == 64  # 32 random bytes, hex
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "uid-hello"
    assert secret["metadata"]["labels"]["botfleet.io/bot"] == "hello"
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "botfleet-operator"
    rasa = kube.live("Deployment", "hello-rasa")["spec"]["template"]["spec"]["containers"][0]
    token_env = next(e for e in rasa["env"] if e["name"] == "RASA_TOKEN")
    assert token_env["valueFrom"]["secretKeyRef"] == {"name": "hello-api-token", "key": "token"}
    reconcile(kube, bot)
    assert kube.live("Secret", "hello-api-token")["data"]["token"] == token and kube.count("POST", "Secret") == 1
    # A Bot naming its own token gets no generated one.
    own = MemoryKube()
    own.objects[("Secret", "bots", "mine")] = {"kind": "Secret", "metadata": {"name": "mine", "namespace": "bots"}}
    reconcile(own, a_bot(secrets={"apiTokenFrom": {"name": "mine", "key": "t"}}), new=True)
    assert ("Secret", "bots", "hello-api-token") not in own.objects


def test_a_deployment_event_refreshes_the_status():
    kube = MemoryKube()
    bot = a_bot()
    reconcile(kube, bot, new=True)
    for component in ("rasa", "actions", "model-serving", "gateway"):
        kube.live("Deployment", f"hello-{component}")["status"] = {"readyReplicas": 1, "updatedReplicas": 1, "observedGeneration": 1}
    live = kube.live("Deployment", "hello-rasa")
    outcome = reconciler.reconcile_child(kube, bot, "Deployment", "hello-rasa", copy.deepcopy(live))
    assert outcome is not None and outcome.status["phase"] == "Ready" and outcome.events == []


def test_a_degraded_bot_still_gets_its_drift_repaired_and_keeps_its_problem():
    kube = MemoryKube(served=KUBERNETES_1_20)
    bot = a_bot(rasa={"autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 4}})
    outcome = reconcile(kube, bot, new=True)
    degraded = {**bot, "status": outcome.status}
    live = kube.live("ConfigMap", "hello-rasa")
    live["data"] = {"endpoints.yml": "edited"}
    live["metadata"]["resourceVersion"] = "777"  # every edit bumps it
    restored = reconciler.reconcile_child(kube, degraded, "ConfigMap", "hello-rasa", copy.deepcopy(live))
    assert restored is not None and restored.events[0][0] == "Restored"
    assert restored.status["conditions"] == outcome.status["conditions"]  # still Degraded: APIUnavailable


def test_a_bot_missing_a_secret_gets_status_but_no_children_from_child_events():
    kube = MemoryKube()
    bot = a_bot(channels=[{"type": "rest"}, {"type": "slack", "credentialsFrom": {"secretName": "slack"}}])
    outcome = reconcile(kube, bot)
    assert [p.reason for p in outcome.problems] == ["SecretMissing"] and outcome.retryable
    degraded = {**bot, "status": outcome.status}
    assert reconciler.reconcile_child(kube, degraded, "Service", "hello-rasa", None) is None
    refreshed = reconciler.reconcile_child(kube, degraded, "Deployment", "hello-rasa", None)
    assert refreshed is not None and refreshed.status["conditions"] == outcome.status["conditions"]
    assert kube.writes() == []


def test_invalid_bots_are_left_to_their_own_handler():
    kube = MemoryKube()
    bot = a_bot()
    reconcile(kube, bot, new=True)
    invalid = copy.deepcopy(bot)
    invalid["spec"]["rasa"] = {"replicas": -1}
    assert reconciler.reconcile_child(kube, invalid, "Service", "hello-rasa", None) is None
    assert ("Service", "bots", "hello-rasa") in kube.objects  # untouched, not deleted


def test_a_labelled_object_the_bot_no_longer_wants_is_left_to_the_full_reconcile():
    kube = MemoryKube()
    bot = a_bot()
    reconcile(kube, bot, new=True)
    kube.calls.clear()
    assert reconciler.reconcile_child(kube, bot, "Service", "hello-legacy", {"metadata": {"name": "hello-legacy"}}) is None
    assert kube.writes() == []


def test_a_failed_write_is_a_problem_not_a_crash():
    kube = MemoryKube()

    def refuse(obj, dry_run=False):
        raise KubeError(403, "forbidden")

    kube.apply = refuse
    outcome = reconciler.reconcile(kube, a_bot(), new=True)
    assert outcome.problems and all(p.reason == "ApplyFailed" for p in outcome.problems)
    assert outcome.status["phase"] == "Degraded" and outcome.retryable


def test_a_failed_read_is_a_problem_too():
    kube = MemoryKube()

    def refuse():
        raise KubeError(500, "etcd is down")

    kube.served_group_versions = refuse
    outcome = reconciler.reconcile(kube, a_bot())
    assert [p.reason for p in outcome.problems] == ["APIError"] and outcome.retryable


def test_children_written_before_server_side_apply_lose_dropped_fields_too():
    kube = MemoryKube()
    bot = a_bot()
    reconcile(kube, bot, new=True)
    # As the operator left it before: merge-patched, owned by the client's default
    # manager, with an annotation the Bot has since dropped.
    legacy = kube.live("Deployment", "hello-rasa")
    legacy["metadata"]["annotations"]["team"] = "support"
    legacy["metadata"]["resourceVersion"] = "400"
    legacy["metadata"]["managedFields"] = [{"manager": "OpenAPI-Generator", "operation": "Update", "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
                                            "fieldsV1": {"f:metadata": {"f:annotations": {"f:team": {}}}}}]
    drift.CACHE.clear()  # as after an upgrade of the operator
    kube.calls.clear()
    outcome = reconcile(kube, bot)
    rasa = kube.live("Deployment", "hello-rasa")
    assert "team" not in rasa["metadata"]["annotations"]
    assert [e["manager"] for e in rasa["metadata"]["managedFields"]] == ["botfleet-operator"]
    assert kube.count("JSONPATCH") == 1 and ("Restored", "restored Deployment hello-rasa, which had drifted from the Bot's spec or been deleted") in outcome.events
    kube.calls.clear()
    reconcile(kube, bot)
    assert kube.writes() == []  # once
