"""A small Kubernetes API layer over the `kubernetes` client's transport: raw JSON
objects in, raw JSON objects out, for exactly the kinds the operator manages."""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import kubernetes

# kind -> (API path prefix, plural, namespaced)
RESOURCES: dict[str, tuple[str, str, bool]] = {
    "ConfigMap": ("/api/v1", "configmaps", True),
    "Secret": ("/api/v1", "secrets", True),
    "Service": ("/api/v1", "services", True),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "Ingress": ("/apis/networking.k8s.io/v1", "ingresses", True),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies", True),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers", True),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets", True),
    "ServiceMonitor": ("/apis/monitoring.coreos.com/v1", "servicemonitors", True),
    "Bot": ("/apis/botfleet.io/v1alpha1", "bots", True),
    "CustomResourceDefinition": ("/apis/apiextensions.k8s.io/v1", "customresourcedefinitions", False),
}
API_SERVER_ENV = "BOTFLEET_KUBE_API"  # tests and local runs against an emulator


class KubeError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def path(kind: str, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
    prefix, plural, namespaced = RESOURCES[kind]
    parts = [prefix]
    if namespaced:
        parts += ["namespaces", namespace or "default"]
    parts.append(plural)
    if name:
        parts.append(name)
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


@functools.lru_cache(maxsize=1)
def api_client() -> kubernetes.client.ApiClient:
    server = os.environ.get(API_SERVER_ENV)
    if server:
        configuration = kubernetes.client.Configuration()
        configuration.host = server
        configuration.verify_ssl = False
    else:
        try:
            kubernetes.config.load_incluster_config()
        except kubernetes.config.ConfigException:
            kubernetes.config.load_kube_config()
        configuration = kubernetes.client.Configuration.get_default_copy()
    return kubernetes.client.ApiClient(configuration)


class Kube:
    def __init__(self, client: kubernetes.client.ApiClient | None = None) -> None:
        self.client = client or api_client()

    def request(
        self, method: str, url: str, body: Any = None, content_type: str = "application/json"
    ) -> dict[str, Any] | None:
        """The decoded response; None for 404 on GET; KubeError for other failures."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        method, full_url, headers, payload, _ = self.client.param_serialize(
            method, url, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        try:
            response = self.client.call_api(method, full_url, headers, payload)
            response.read()
            status, data = response.status, response.data
        except kubernetes.client.exceptions.ApiException as error:
            status, data = error.status or 0, (error.body or "").encode() if isinstance(error.body, str) else error.body
        if status == 404 and method == "GET":
            return None
        decoded = json.loads(data) if data else None
        if status >= 400:
            message = decoded.get("message", "") if isinstance(decoded, dict) else str(decoded)
            raise KubeError(status, message)
        return decoded

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.request("GET", path(kind, namespace, name))

    def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        return self.request("POST", path(obj["kind"], obj["metadata"].get("namespace")), obj)

    def merge_patch(self, kind: str, namespace: str | None, name: str, patch: dict[str, Any], subresource: str | None = None) -> dict[str, Any] | None:
        return self.request(
            "PATCH", path(kind, namespace, name, subresource), patch, "application/merge-patch+json"
        )

    def exists(self, kind: str, namespace: str | None, name: str) -> bool:
        return self.get(kind, namespace, name) is not None
