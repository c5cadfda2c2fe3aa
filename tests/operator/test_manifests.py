"""The operator's own manifests (RBAC, Deployment) validate and grant what it uses."""

import kubernetes_validate
import pytest
import yaml
from conftest import ROOT, SUPPORTED_KUBERNETES

from botfleet_operator.handlers import CHILD_RESOURCES
from botfleet_operator.kube import RESOURCES
from botfleet_operator.reconcile import CHILD_KINDS

MANIFESTS = [ROOT / "k8s/base/botfleet-operator.yaml"]
CUSTOM_KINDS = {"ClusterKopfPeering"}


def documents():
    return [d for path in MANIFESTS for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES)
def test_operator_manifests_validate(version):
    for document in documents():
        if document["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(document, version, strict=True)


def test_rbac_covers_every_kind_the_operator_touches():
    role = next(d for d in documents() if d["kind"] == "ClusterRole")
    granted = {(group, resource): set(rule["verbs"]) for rule in role["rules"] for group in rule["apiGroups"] for resource in rule["resources"]}
    for kind, resource in RESOURCES.items():
        if kind == "KopfPeering":  # a namespaced operator's (overlays/prod)
            continue
        if kind == "Event":  # posted, never read
            assert "create" in granted[(resource.group, resource.plural)]
            continue
        assert "get" in granted[(resource.group, resource.plural)], kind
    for group, _, plural in CHILD_RESOURCES:
        assert {"list", "watch", "create", "patch", "delete"} <= granted[(group, plural)], plural
    for kind in CHILD_KINDS:  # server-side apply is a patch; pruning lists and deletes
        resource = RESOURCES[kind]
        assert {"list", "patch", "delete"} <= granted[(resource.group, resource.plural)], kind
    assert granted[("", "secrets")] == {"get", "create"}  # existence checks, the token Secret
    assert {"patch"} <= granted[("botfleet.io", "bots/status")]
    assert {"get", "list", "watch", "patch"} <= granted[("kopf.dev", "clusterkopfpeerings")]


def test_every_child_kind_is_watched():
    watched = {(group, plural) for group, _, plural in CHILD_RESOURCES}
    assert watched == {(RESOURCES[kind].group, RESOURCES[kind].plural) for kind in CHILD_KINDS}
    # One served version each, the chart's: no fallback to older API versions.
    assert {f"{g}/{v}".lstrip("/") for g, v, _ in CHILD_RESOURCES} == {RESOURCES[kind].group_version for kind in CHILD_KINDS}
