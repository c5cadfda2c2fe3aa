"""Test and benchmark support for running the operator against kmock's emulator.

Loaded by kopf as an extra operator module (the login handler), and imported by the
tests and ci/bench_operator.py to register the resources the operator uses.
"""

import os
from typing import Any

import kopf

VERBS = {"list", "watch", "get", "create", "patch", "update", "delete"}
# The emulator serves only what discovery lists: kopf's own needs and every kind the
# operator reads or writes.
RESOURCES = {
    "v1/namespaces": ("Namespace", False, set()),
    "v1/events": ("Event", True, set()),
    "v1/configmaps": ("ConfigMap", True, set()),
    "v1/secrets": ("Secret", True, set()),
    "v1/services": ("Service", True, set()),
    "apps/v1/deployments": ("Deployment", True, {"status"}),
    "networking.k8s.io/v1/ingresses": ("Ingress", True, set()),
    "networking.k8s.io/v1/networkpolicies": ("NetworkPolicy", True, set()),
    "autoscaling/v2/horizontalpodautoscalers": ("HorizontalPodAutoscaler", True, set()),
    "policy/v1/poddisruptionbudgets": ("PodDisruptionBudget", True, set()),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False, set()),
    "botfleet.io/v1alpha1/bots": ("Bot", True, {"status"}),
}


def register_resources(emulator: Any) -> None:
    import kmock

    for key, (kind, namespaced, subresources) in RESOURCES.items():
        emulator.resources[key] = kmock.ResourceInfo(kind=kind, namespaced=namespaced, verbs=VERBS, subresources=subresources)


@kopf.on.login()
def login_to_emulator(**_: Any) -> kopf.ConnectionInfo:
    return kopf.ConnectionInfo(server=os.environ["BOTFLEET_KUBE_API"], insecure=True)
