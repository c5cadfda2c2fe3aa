"""Smoke tests of the real cluster harness (ci/cluster.py): the node is Ready, pods run from imported images,
Service names resolve inside pods, pods reach the host's services and the API, and the audit log records writes.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import cluster_support
import pytest
from cluster_support import ADMIN_USER, PAUSE_IMAGE, Cluster, audit_events, kubectl, kubectl_json, wait_for

NAMESPACE = "cluster-smoke"

# perl-base (in Debian's minbase) has IO::Socket: enough for a one-line HTTP server without building an image.
HTTP_SERVER = (
    "use IO::Socket::INET; $| = 1;"
    "my $s = IO::Socket::INET->new(LocalPort => 8080, Listen => 16, ReuseAddr => 1) or die $!;"
    'print "listening\\n";'
    'while (my $c = $s->accept) { <$c>; print $c "HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\nhello from web\\n";'
    " close $c }"
)


def pod(name: str, image: str, command: list[str], labels: dict[str, str] | None = None) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels or {"app": name}},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": image, "imagePullPolicy": "Never",
                                 **({"command": command} if command else {})}]},
    })


def phase(name: str) -> str:
    return kubectl_json("get", "pod", "-n", NAMESPACE, name).get("status", {}).get("phase", "")


def wait_running(name: str, timeout: float = 90) -> None:
    wait_for(lambda: phase(name) == "Running", timeout, message=f"pod {name} Running")


def in_pod(script: str, pod_name: str = "toolbox", timeout: float = 30) -> str:
    """Run a bash script inside a pod (kubectl exec: apiserver -> kubelet -> containerd) and return stdout."""
    return kubectl("exec", "-n", NAMESPACE, pod_name, "--", "bash", "-c", script, timeout=timeout).stdout


@pytest.fixture(scope="module")
def namespace(cluster: Cluster) -> Iterator[str]:
    del cluster
    kubectl("create", "namespace", NAMESPACE, check=False)
    wait_for(lambda: kubectl("get", "serviceaccount", "-n", NAMESPACE, "default", check=False).returncode == 0,
             30, message="the namespace's default ServiceAccount")
    yield NAMESPACE
    kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


@pytest.fixture(scope="module")
def debian(cluster: Cluster) -> str:
    del cluster
    image = cluster_support.ensure_debian_base()
    cluster_support.import_images(image)
    return image


@pytest.fixture(scope="module")
def toolbox(namespace: str, debian: str) -> str:
    """A long-running pod with bash, getent and /dev/tcp, to probe the network from inside the cluster."""
    del namespace
    kubectl("apply", "-f", "-", input=pod("toolbox", debian, ["sleep", "infinity"]))
    wait_running("toolbox")
    return "toolbox"


def test_node_is_ready_and_schedulable(cluster: Cluster) -> None:
    node = kubectl_json("get", "node", cluster.node_ip)
    conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    assert not [t for t in node["spec"].get("taints") or [] if t["effect"] in ("NoSchedule", "NoExecute")]
    assert node["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.20.")


def test_pause_pod_runs(namespace: str) -> None:
    kubectl("apply", "-f", "-", input=pod("pause", PAUSE_IMAGE, []))
    wait_running("pause")
    status = kubectl_json("get", "pod", "-n", namespace, "pause")["status"]
    assert status["podIP"].startswith("10.244.77.")
    kubectl("delete", "pod", "-n", namespace, "pause", "--wait=false")


def test_service_name_resolves_and_answers_from_a_pod(namespace: str, debian: str, toolbox: str) -> None:
    kubectl("apply", "-f", "-", input=pod("web", debian, ["perl", "-e", HTTP_SERVER], labels={"app": "web"}))
    kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": namespace},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
    }))
    wait_running("web")
    cluster_ip = kubectl_json("get", "service", "-n", namespace, "web")["spec"]["clusterIP"]
    # dns-sync picks the Service up within about a second.
    resolved = wait_for(lambda: in_pod("getent hosts web || true").split(), 20, message="web to resolve")
    assert resolved[0] == cluster_ip
    assert f"web.{namespace}.svc.cluster.local" in resolved
    reply = wait_for(lambda: in_pod(
        'exec 3<>/dev/tcp/web/80 && printf "GET / HTTP/1.0\\r\\n\\r\\n" >&3 && cat <&3 || true'),
        20, message="web to answer through its Service")
    assert "hello from web" in reply
    # kubectl logs goes apiserver -> kubelet on the node IP.
    assert "listening" in kubectl("logs", "-n", namespace, "web").stdout
    assert in_pod(f"getent hosts no-such-service.{namespace}.svc.cluster.local || echo nxdomain").strip() == "nxdomain"


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_pod_reaches_host_redis_through_a_selectorless_service(cluster: Cluster, namespace: str, toolbox: str) -> None:
    if not _listening(6379):
        pytest.skip("no Redis on 127.0.0.1:6379 on this machine")
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "redis", "namespace": namespace},
         "spec": {"ports": [{"name": "redis", "port": 6379}]}},
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "redis", "namespace": namespace},
         "subsets": [{"addresses": [{"ip": cluster.node_ip}], "ports": [{"name": "redis", "port": 6379}]}]},
    ]}))
    ping = 'exec 3<>/dev/tcp/{host}/6379 && printf "PING\\r\\n" >&3 && timeout 5 head -c 7 <&3 || true'
    assert "+PONG" in in_pod(ping.format(host=cluster.node_ip))
    assert "+PONG" in wait_for(lambda: in_pod(ping.format(host="redis")), 20, message="redis Service")


def test_pod_reaches_an_arbitrary_port_on_the_node_ip(cluster: Cluster, toolbox: str) -> None:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"model bytes\n")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((cluster.node_ip, 0), Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        reply = in_pod(f'exec 3<>/dev/tcp/{cluster.node_ip}/{port} && printf "GET / HTTP/1.0\\r\\n\\r\\n" >&3 '
                       "&& cat <&3")
        assert "model bytes" in reply
    finally:
        server.shutdown()


def test_pod_reaches_the_api_at_kubernetes_default(toolbox: str) -> None:
    # kubernetes.default -> 10.0.0.1:443 -> NODE_IP:<apiserver port> -> forwarder -> 127.0.0.1.
    out = in_pod("getent hosts kubernetes.default.svc.cluster.local; "
                 "timeout 5 bash -c 'exec 3<>/dev/tcp/kubernetes.default/443' && echo connected")
    assert "10.0.0.1" in out and "connected" in out
    token_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    assert "ca.crt" in in_pod(f"ls {token_dir}")


def test_audit_log_records_a_create_by_the_admin(namespace: str) -> None:
    since = time.time() - 1  # the apiserver's clock is this machine's; allow for sub-second rounding
    name = f"audit-{uuid.uuid4().hex[:8]}"
    kubectl("create", "configmap", "-n", namespace, name, "--from-literal=k=v")

    def created() -> list[dict]:
        return [e for e in audit_events(since_ts=since, user=ADMIN_USER)
                if e["verb"] == "create" and e.get("objectRef", {}).get("resource") == "configmaps"
                and e["objectRef"].get("name") == name]

    events = wait_for(created, 10, message="the audit event")
    assert events[0]["objectRef"]["namespace"] == namespace
    assert events[0]["level"] == "Request"
    assert events[0]["responseStatus"]["code"] == 201
    # Reads are not audited: the log stays small enough to scan per test.
    kubectl("get", "configmap", "-n", namespace, name)
    assert not [e for e in audit_events(since_ts=since, user=ADMIN_USER) if e["verb"] in ("get", "list", "watch")]
