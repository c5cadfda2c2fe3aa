"""A small Kubernetes API layer over the `kubernetes` client's transport: raw JSON
objects in, raw JSON objects out, for exactly the kinds the operator manages."""

from __future__ import annotations

import functools
import json
import os
from typing import Any, NamedTuple

import kubernetes

FIELD_MANAGER = "botfleet-operator"
USER_AGENT_VERSION = "0.1.0"
APPLY_PATCH = "application/apply-patch+yaml"  # a JSON body is valid YAML


class ApiResource(NamedTuple):
    """Where a kind is served: the API path prefix, its plural and its scope."""

    prefix: str  # "/api/v1" or "/apis/<group>/<version>"
    plural: str
    namespaced: bool

    @property
    def group_version(self) -> str:
        """"v1", "apps/v1", "autoscaling/v2": as in apiVersion and in discovery."""
        return self.prefix.removeprefix("/apis/").removeprefix("/api/")

    @property
    def group(self) -> str:
        return self.group_version.rpartition("/")[0]


RESOURCES: dict[str, ApiResource] = {
    "ConfigMap": ApiResource("/api/v1", "configmaps", True),
    "Secret": ApiResource("/api/v1", "secrets", True),
    "Event": ApiResource("/api/v1", "events", True),
    "Service": ApiResource("/api/v1", "services", True),
    "Deployment": ApiResource("/apis/apps/v1", "deployments", True),
    "Ingress": ApiResource("/apis/networking.k8s.io/v1", "ingresses", True),
    "NetworkPolicy": ApiResource("/apis/networking.k8s.io/v1", "networkpolicies", True),
    "HorizontalPodAutoscaler": ApiResource("/apis/autoscaling/v2", "horizontalpodautoscalers", True),
    "PodDisruptionBudget": ApiResource("/apis/policy/v1", "poddisruptionbudgets", True),
    "ServiceMonitor": ApiResource("/apis/monitoring.coreos.com/v1", "servicemonitors", True),
    "Bot": ApiResource("/apis/botfleet.io/v1alpha1", "bots", True),
    "CustomResourceDefinition": ApiResource("/apis/apiextensions.k8s.io/v1", "customresourcedefinitions", False),
    "KopfPeering": ApiResource("/apis/kopf.dev/v1", "kopfpeerings", True),
    "ClusterKopfPeering": ApiResource("/apis/kopf.dev/v1", "clusterkopfpeerings", False),
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


def label_selector(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


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
    client = kubernetes.client.ApiClient(configuration)
    # The API server names a writer's field manager after its user agent: the status
    # and Secret writes are then the operator's too, not "OpenAPI-Generator"'s.
    client.user_agent = f"{FIELD_MANAGER}/{USER_AGENT_VERSION}"
    return client


class Kube:
    def __init__(self, client: kubernetes.client.ApiClient | None = None) -> None:
        self.client = client or api_client()

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        content_type: str = "application/json",
        query: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any] | None:
        """The decoded response; None for 404 on GET and DELETE; KubeError otherwise."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        method, full_url, headers, payload, _ = self.client.param_serialize(
            method, url, query_params=query or None, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        try:
            response = self.client.call_api(method, full_url, headers, payload)
            response.read()
            status, data = response.status, response.data
        except kubernetes.client.exceptions.ApiException as error:
            status, data = error.status or 0, (error.body or "").encode() if isinstance(error.body, str) else error.body
        if status == 404 and method in ("GET", "DELETE"):
            return None
        try:
            decoded = json.loads(data) if data else None
        except ValueError:
            decoded = data.decode(errors="replace") if isinstance(data, bytes) else data
        if status >= 400:
            message = decoded.get("message", "") if isinstance(decoded, dict) else str(decoded)
            raise KubeError(status, message)
        return decoded if isinstance(decoded, dict) else None

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.request("GET", path(kind, namespace, name))

    def list_objects(self, kind: str, namespace: str | None, labels: dict[str, str]) -> list[dict[str, Any]]:
        """Objects of a kind in a namespace with these labels. Items of a list carry no
        apiVersion and kind (the list does): they are filled in."""
        found = self.request("GET", path(kind, namespace), query=[("labelSelector", label_selector(labels))]) or {}
        api_version = RESOURCES[kind].group_version
        return [{"apiVersion": api_version, "kind": kind, **item} for item in found.get("items") or []]

    def create(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        return self.request("POST", path(obj["kind"], obj["metadata"].get("namespace")), obj)

    def apply(self, obj: dict[str, Any], dry_run: bool = False) -> dict[str, Any] | None:
        """Server-side apply as the operator's field manager, taking over conflicting
        fields (force): the Bot's spec is the only source of what the operator owns."""
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        if dry_run:
            query.append(("dryRun", "All"))
        metadata = obj["metadata"]
        return self.request(
            "PATCH", path(obj["kind"], metadata.get("namespace"), metadata["name"]), obj, APPLY_PATCH, query
        )

    def delete(self, kind: str, namespace: str | None, name: str, uid: str | None = None) -> dict[str, Any] | None:
        """Deletes one object; with a uid, only that incarnation (a namesake created since
        is left alone). None when it was already gone."""
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        return self.request("DELETE", path(kind, namespace, name), body)

    def merge_patch(self, kind: str, namespace: str | None, name: str, patch: dict[str, Any], subresource: str | None = None) -> dict[str, Any] | None:
        return self.request(
            "PATCH", path(kind, namespace, name, subresource), patch, "application/merge-patch+json"
        )

    def json_patch(self, kind: str, namespace: str | None, name: str, operations: list[dict[str, Any]]) -> dict[str, Any] | None:
        return self.request("PATCH", path(kind, namespace, name), operations, "application/json-patch+json")

    def exists(self, kind: str, namespace: str | None, name: str) -> bool:
        return self.get(kind, namespace, name) is not None

    def served_group_versions(self) -> set[str]:
        """Every group-version the server serves ("v1", "apps/v1", ...), from discovery."""
        core = self.request("GET", "/api") or {}
        groups = self.request("GET", "/apis") or {}
        served = set(core.get("versions") or [])
        for group in groups.get("groups") or []:
            served.update(v["groupVersion"] for v in group.get("versions") or [] if v.get("groupVersion"))
        return served
