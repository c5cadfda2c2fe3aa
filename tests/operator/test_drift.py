"""Drift in the API server's own terms: the dry-run result against the live object,
both normalised by the server; the in-sync memory; why a write happens; orphans."""

import copy

from botfleet_operator.drift import (
    SPEC_HASH_ANNOTATION,
    LiveChild,
    SyncCache,
    Synced,
    fingerprint,
    has_legacy_owner,
    in_sync,
    live_child,
    merge_fields,
    normalised,
    orphans,
    same_in_server_form,
    upgraded_managed_fields,
    write_reason,
)

# What charts/bot renders for a container, and what the API server stores of it.
RENDERED = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "hello-rasa", "namespace": "bots", "labels": {"botfleet.io/bot": "hello"}, "annotations": {SPEC_HASH_ANNOTATION: "h1"}},
    "spec": {"template": {"spec": {"containers": [{
        "name": "rasa",
        "env": [{"name": "EMPTY", "value": ""}, {"name": "HOME", "value": "/tmp"}],
        "resources": {"requests": {"cpu": 2, "memory": "1024Mi"}},
    }]}}},
}


def stored(**changes):
    """The Deployment as the server keeps it: normalised values, defaults, server
    metadata, field ownership and a status written by the controllers."""
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "hello-rasa", "namespace": "bots", "uid": "u1", "resourceVersion": "41", "generation": 3,
            "creationTimestamp": "2026-12-01T10:00:00Z",
            "labels": {"botfleet.io/bot": "hello"},
            "annotations": {SPEC_HASH_ANNOTATION: "h1", "deployment.kubernetes.io/revision": "2"},
            "managedFields": [
                {"manager": "botfleet-operator", "operation": "Apply", "apiVersion": "apps/v1", "time": "2026-12-01T10:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}},
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1", "time": "2026-12-01T10:05:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}},
            ],
        },
        "spec": {"replicas": 1, "progressDeadlineSeconds": 600, "template": {"spec": {"dnsPolicy": "ClusterFirst", "containers": [{
            "name": "rasa",
            "env": [{"name": "EMPTY"}, {"name": "HOME", "value": "/tmp"}],
            "resources": {"requests": {"cpu": "2", "memory": "1Gi"}},
            "terminationMessagePath": "/dev/termination-log",
        }]}}},
        "status": {"observedGeneration": 3, "readyReplicas": 1},
    }
    for path, value in changes.items():
        target = obj
        *parents, last = path.split("__")
        for key in parents:
            target = target[key]
        target[last] = value
    return obj


def test_the_rendered_form_never_matches_what_the_server_stores():
    # Why the operator compares dry-run results: "desired is a subset of live" fails
    # on every normalised value, so it would re-apply forever.
    live = stored()
    container = live["spec"]["template"]["spec"]["containers"][0]
    rendered = RENDERED["spec"]["template"]["spec"]["containers"][0]
    assert rendered["env"][0] not in container["env"] and rendered["resources"] != container["resources"]


def test_a_dry_run_that_changes_nothing_is_in_sync():
    live = stored()
    # A no-op apply returns the stored object; a later read differs only in what the
    # server and the controllers bump on their own.
    dry_run = stored(metadata__resourceVersion="57", metadata__generation=3, status={"observedGeneration": 3, "readyReplicas": 0})
    dry_run["metadata"]["managedFields"][1]["time"] = "2026-12-01T10:09:00Z"
    assert same_in_server_form(dry_run, live)
    assert fingerprint(dry_run) == fingerprint(live)


def test_a_dry_run_that_would_restore_an_edit_is_drift():
    edited = stored()
    edited["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"] = "/root"
    assert not same_in_server_form(stored(), edited)
    relabelled = stored(metadata__labels={"botfleet.io/bot": "hello", "team": "x"})
    assert not same_in_server_form(stored(), relabelled)


def test_a_field_removed_from_the_bot_is_a_difference():
    # The dry run of an apply without an annotation no longer has it: a write follows.
    live = stored()
    dry_run = stored()
    del dry_run["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
    assert not same_in_server_form(dry_run, live)


def test_taking_over_a_field_is_a_change_even_with_the_same_value():
    # Ownership moves with a real apply (so a later removal from the Bot removes it).
    live = stored()
    live["metadata"]["managedFields"][0]["manager"] = "kubectl-edit"
    assert not same_in_server_form(stored(), live)


def test_status_ownership_is_not_drift():
    # Kubernetes 1.20 records the controller's status writes and its annotation in one
    # entry (no subresource field); later releases in an entry of the status subresource.
    live = stored()
    changed = stored()
    changed["metadata"]["managedFields"][1]["fieldsV1"] = {"f:status": {"f:unavailableReplicas": {}}}
    changed["metadata"]["managedFields"].append({"manager": "kube-controller-manager", "operation": "Update", "subresource": "status", "fieldsV1": {"f:status": {"f:conditions": {}}}})
    assert fingerprint(changed) == fingerprint(live)
    combined = stored()
    combined["metadata"]["managedFields"][1]["fieldsV1"] = {"f:metadata": {"f:annotations": {}}, "f:status": {"f:readyReplicas": {}}}
    other_status = copy.deepcopy(combined)
    other_status["metadata"]["managedFields"][1]["fieldsV1"]["f:status"] = {"f:availableReplicas": {}}
    assert fingerprint(combined) == fingerprint(other_status) != fingerprint(live)


def test_normalised_keeps_what_the_operator_owns():
    view = normalised(stored())
    assert "status" not in view
    assert set(view["metadata"]) == {"name", "namespace", "labels", "annotations", "managedFields"}
    assert all("time" not in entry for entry in view["metadata"]["managedFields"])
    assert view["spec"]["replicas"] == 1


def child(**overrides):
    fields = {
        "kind": "Service", "api_version": "v1", "name": "hello-rasa", "namespace": "bots", "uid": "u2", "resource_version": "7",
        "labels": (("app.kubernetes.io/managed-by", "botfleet-operator"), ("botfleet.io/bot", "hello")),
        "owner_uid": "bot-uid", "spec_hash": "h1", "fingerprint": "f1",
    }
    return LiveChild(**{**fields, **overrides})


def test_live_child_summarises_an_object():
    live = stored()
    live["metadata"]["ownerReferences"] = [{"kind": "Other", "uid": "x"}, {"kind": "Bot", "uid": "bot-uid", "controller": True}]
    summary = live_child(live)
    assert (summary.kind, summary.name, summary.uid, summary.resource_version, summary.owner_uid, summary.spec_hash) == ("Deployment", "hello-rasa", "u1", "41", "bot-uid", "h1")
    assert summary.label("botfleet.io/bot") == "hello" and summary.fingerprint == fingerprint(live)
    # List items carry no kind: the caller says which.
    item = copy.deepcopy(live)
    del item["kind"]
    assert live_child(item, "Deployment").kind == "Deployment"


def test_in_sync_by_resource_version_or_by_content():
    live = child()
    assert in_sync(Synced("h1", "7", "f0"), "h1", live)  # nothing happened since
    assert in_sync(Synced("h1", "5", "f1"), "h1", live)  # a status update bumped the version only
    assert not in_sync(Synced("h1", "5", "f0"), "h1", live)  # changed since: check again
    assert not in_sync(Synced("h0", "7", "f1"), "h1", live)  # the Bot's spec changed
    assert not in_sync(None, "h1", live)
    # An emulator that assigns no resourceVersion: "" never matches "", content does.
    assert not in_sync(Synced("h1", "", "f0"), "h1", child(resource_version=""))


def test_the_cache_remembers_by_uid_and_forgets():
    cache = SyncCache(maxsize=2)
    live = stored()
    cache.record("h1", live)
    assert cache.get("u1") == Synced("h1", "41", fingerprint(live))
    assert cache.known_uid("Deployment", "bots", "hello-rasa") == "u1"
    cache.record_live("h2", child(uid="a"))
    cache.record_live("h2", child(uid="b"))
    assert cache.get("u1") is None and len(cache) == 2  # least recently used out first
    cache.forget("a")
    assert cache.get("a") is None and cache.get("b") is not None


def test_why_a_write_happens():
    desired = {"metadata": {"annotations": {SPEC_HASH_ANNOTATION: "h2"}}}
    assert write_reason(None, desired, on_child_event=False) == "Created"
    assert write_reason(None, desired, on_child_event=True) == "Restored"  # deleted by someone
    assert write_reason(child(spec_hash="h1"), desired, on_child_event=False) == "Updated"
    assert write_reason(child(spec_hash="h2"), desired, on_child_event=True) == "Restored"
    assert write_reason(child(spec_hash=None), desired, on_child_event=False) == "Updated"


def test_orphans_are_only_this_bots_own_and_undesired():
    desired = [("Service", "hello-rasa"), ("Deployment", "hello-rasa")]
    ingress = child(kind="Ingress", name="hello", uid="i")
    candidates = [
        child(),  # desired
        ingress,  # no longer desired: an orphan
        child(kind="HorizontalPodAutoscaler", name="hello-rasa", uid="h"),  # an orphan
        child(kind="Ingress", name="other", uid="o", owner_uid="another-bot-uid"),  # another owner
        child(kind="Ingress", name="hand-made", uid="m", owner_uid=None),  # nobody's
        child(kind="Ingress", name="mislabelled", uid="l", labels=(("botfleet.io/bot", "hello"),)),  # not managed by us
        child(kind="Ingress", name="namesake", uid="n", labels=(("app.kubernetes.io/managed-by", "botfleet-operator"), ("botfleet.io/bot", "hello2"))),
        child(kind="Secret", name="hello-api-token", uid="s"),  # the token: never pruned
    ]
    found = orphans(candidates, desired, "hello", "bot-uid", "botfleet-operator")
    assert [c.key for c in found] == [("HorizontalPodAutoscaler", "hello-rasa"), ("Ingress", "hello")]


LEGACY = {"manager": "OpenAPI-Generator", "operation": "Update", "apiVersion": "apps/v1", "time": "2026-11-01T00:00:00Z", "fieldsType": "FieldsV1",
          "fieldsV1": {"f:metadata": {"f:annotations": {"f:team": {}}}, "f:spec": {"f:replicas": {}}}}


def test_fields_written_before_server_side_apply_are_handed_to_the_apply_manager():
    # Created and merge-patched by the operator before it applied: that old manager
    # would keep a field dropped from the Bot alive. kubectl's csaupgrade does this too.
    live = stored()
    assert not has_legacy_owner(live)
    live["metadata"]["managedFields"].append(LEGACY)
    assert has_legacy_owner(live)
    upgraded = upgraded_managed_fields(live, "botfleet-operator")
    assert not has_legacy_owner({"metadata": {"managedFields": upgraded}})
    (applier,) = [e for e in upgraded if e["manager"] == "botfleet-operator"]
    assert applier["operation"] == "Apply"
    assert applier["fieldsV1"] == {"f:spec": {"f:replicas": {}}, "f:metadata": {"f:annotations": {"f:team": {}}}}
    assert [e["manager"] for e in upgraded] == ["botfleet-operator", "kube-controller-manager"]  # others kept
    # Never applied before: the old entry becomes the apply manager's.
    only_legacy = {"apiVersion": "v1", "metadata": {"managedFields": [LEGACY]}}
    (entry,) = upgraded_managed_fields(only_legacy, "botfleet-operator")
    assert (entry["manager"], entry["operation"], entry["fieldsV1"]) == ("botfleet-operator", "Apply", LEGACY["fieldsV1"])
    # A status written with the old client is a subresource's: left alone.
    status_only = {"metadata": {"managedFields": [{**LEGACY, "subresource": "status"}]}}
    assert not has_legacy_owner(status_only) and upgraded_managed_fields(status_only, "botfleet-operator") == status_only["metadata"]["managedFields"]


def test_field_sets_merge_as_tries():
    a = {"f:spec": {"f:template": {"f:spec": {"k:{\"name\":\"rasa\"}": {"f:image": {}}}}}}
    b = {"f:spec": {"f:template": {"f:spec": {"k:{\"name\":\"rasa\"}": {"f:env": {}}}}, "f:replicas": {}}}
    assert merge_fields(a, b) == {"f:spec": {"f:template": {"f:spec": {"k:{\"name\":\"rasa\"}": {"f:image": {}, "f:env": {}}}}, "f:replicas": {}}}
