"""The operator's own manifests (RBAC, Deployment) validate and grant what it uses."""

import kubernetes_validate
import pytest
import yaml
from conftest import ROOT, SUPPORTED_KUBERNETES

from botfleet_operator.handlers import CHILD_RESOURCES
from botfleet_operator.kube import RESOURCES

MANIFESTS = [ROOT / "k8s/base/botfleet-operator.yaml"]


def documents():
    return [d for path in MANIFESTS for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES)
def test_operator_manifests_validate(version):
    for document in documents():
        kubernetes_validate.validate(document, version, strict=True)


def test_rbac_covers_every_kind_the_operator_touches():
    role = next(d for d in documents() if d["kind"] == "ClusterRole")
    granted = {(group, resource): set(rule["verbs"]) for rule in role["rules"] for group in rule["apiGroups"] for resource in rule["resources"]}
    for kind, (prefix, plural, _) in RESOURCES.items():
        group = "" if prefix == "/api/v1" else prefix.split("/")[2]
        assert "get" in granted[(group, plural)], kind
    for group, _, plural in CHILD_RESOURCES:
        assert {"list", "watch", "create", "patch"} <= granted[(group, plural)], plural
    assert granted[("", "secrets")] == {"get"}  # existence checks only
    assert {"patch"} <= granted[("botfleet.io", "bots/status")]
