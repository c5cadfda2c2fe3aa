"""botfleet on the real cluster: images, the operator as charts/botfleet installs it,
the stores the pods use, the models they fetch, and the Bots of k8s/examples.

Everything here drives the real thing: images built from the Dockerfiles, the chart
rendered by the Helm engine and applied with kubectl, and conversations sent to a
Bot's Service. Only the machine's own Redis, PostgreSQL and RabbitMQ stand outside
the cluster: they listen on loopback, so pods reach them through the node's
forwarder, behind selector-less Services named as a cluster's would be.
"""

from __future__ import annotations

import copy
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

import yaml
from cluster_support import kubectl, wait_for

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "ci"))
OPERATOR_NAMESPACE = "botfleet-system"
BOTS_NAMESPACE = "bots"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:botfleet-operator"
DATABASE = "botfleet_k8s"
MODEL_PORT = 18089
# Seconds between the operator's periodic re-reconciles in these tests.
RESYNC_SECONDS = 15
RUN = ROOT / ".run/cluster-tests"


def load(path: Path | str) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=True, text=True, capture_output=True, **kwargs)


# --- models, served to the pods over HTTP as a model server would ------------------


class ModelFiles(http.server.SimpleHTTPRequestHandler):
    """Static files with an ETag, as Rasa's `models:` endpoint expects (304 when the
    client already has this version)."""

    def end_headers(self) -> None:
        path = Path(self.translate_path(self.path))
        if path.is_file():
            stat = path.stat()
            self.send_header("ETag", f'"{stat.st_size:x}-{int(stat.st_mtime):x}"')
        super().end_headers()

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        if path.is_file():
            stat = path.stat()
            if self.headers.get("If-None-Match") == f'"{stat.st_size:x}-{int(stat.st_mtime):x}"':
                self.send_response(304)
                self.end_headers()
                return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        with open(RUN / "model-server.log", "a") as log:
            log.write(f"{self.address_string()} {format % args}\n")


def serve_models(directory: Path, host: str, port: int = MODEL_PORT) -> http.server.ThreadingHTTPServer:
    handler = lambda *a, **kw: ModelFiles(*a, directory=str(directory), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer((host, port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def train_models(directory: Path) -> dict[str, str]:
    """The demo bot's Rasa models (in-process NLU, and the model-serving pipeline) and
    its BentoML NLU model archive, trained on the host when their inputs changed."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, config in (("demo-diet", "config.yml"), ("demo-botfleet", "config.botfleet.yml")):
        model = run([sys.executable, str(ROOT / "ci/train.py"), str(ROOT / "bots/demo"), "--config", config]).stdout.strip()
        target = directory / f"{name}.tar.gz"
        if not target.exists() or target.stat().st_size != Path(model).stat().st_size:
            target.write_bytes(Path(model).read_bytes())
        files[name] = target.name
    import stack  # ci/stack.py: the same NLU model `make up PIPELINE=botfleet` serves

    tag = stack.train_nlu_model()
    archive = directory / f"{tag.replace(':', '-')}.bentomodel"
    if not archive.exists():
        run([str(ROOT / ".venvs/serving/bin/bentoml"), "models", "export", tag, str(archive)],
            env={**os.environ, "BENTOML_HOME": stack.bentoml_home()})
    files["nlu"] = archive.name
    files["nlu_tag"] = tag
    return files


# --- the host's stores, as the pods see them ---------------------------------------


def prepare_database() -> None:
    """A fresh database for the cluster's bots: schema and demo catalog."""
    run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"])
    run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-c", f"CREATE DATABASE {DATABASE}"])
    run([str(ROOT / ".venvs/actions/bin/python"), "-m", "botfleet_common.db",
         "--url", f"postgresql://postgres@127.0.0.1:5432/{DATABASE}", "--seed"])


def external_service(name: str, node_ip: str, port: int, namespace: str = BOTS_NAMESPACE) -> list[dict[str, Any]]:
    """A Service without a selector and its Endpoints: how a cluster names a database
    that runs outside it."""
    metadata = {"name": name, "namespace": namespace}
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": metadata,
         "spec": {"ports": [{"name": "tcp", "port": port, "targetPort": port}]}},
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": metadata,
         "subsets": [{"addresses": [{"ip": node_ip}], "ports": [{"name": "tcp", "port": port}]}]},
    ]


def secret(name: str, data: dict[str, str], namespace: str = BOTS_NAMESPACE) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}, "stringData": data}


def store_objects(node_ip: str) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": BOTS_NAMESPACE}}]
    for name, port in (("redis", 6379), ("redis-master", 6379), ("postgresql", 5432), ("rabbitmq", 5672)):
        objects += external_service(name, node_ip, port)
    database_url = f"postgresql://postgres@postgresql.{BOTS_NAMESPACE}.svc.cluster.local:5432/{DATABASE}"
    objects += [
        secret("bots-db", {"url": database_url}),
        secret("demo-support-db", {"url": database_url}),
        # RabbitMQ lets guest in from loopback only; the forwarder connects from there.
        secret("rabbitmq-credentials", {"USERNAME": "guest", "PASSWORD": "guest"}),
        secret("demo-support-api", {"token": hashlib.sha256(b"demo-support").hexdigest()}),
    ]
    return objects


# --- the operator, as charts/botfleet installs it ------------------------------------


def operator_objects(image_id: str = "", resync_seconds: int = RESYNC_SECONDS) -> list[dict[str, Any]]:
    """charts/botfleet as the tests install it. The image's ID goes into a pod
    annotation: a rebuilt image keeps its tag, and the pods must restart onto it."""
    import helm_python

    values = {
        "podAnnotations": {"botfleet.io/image-id": image_id[:63]},
        "image": {"repository": "botfleet/operator", "tag": "0.1.0", "pullPolicy": "Never"},
        "operator": {"logFormat": "json", "retryBaseSeconds": 2},
        # Kubernetes 1.20 serves policy/v1beta1 only; the chart's PDB is policy/v1.
        "podDisruptionBudget": {"enabled": False},
        "extraEnv": [{"name": "BOTFLEET_RESYNC_SECONDS", "value": str(resync_seconds)}],
        # Small enough that both replicas and a Bot fit on a 2-core node.
        "resources": {"requests": {"cpu": "50m", "memory": "192Mi"}, "limits": {"memory": "512Mi"}},
    }
    with helm_python.Chart.load(str(ROOT / "charts/botfleet")) as chart:
        rendered = chart.render(values, name="botfleet", namespace=OPERATOR_NAMESPACE)
    objects = [doc for path, text in sorted(rendered.items()) if path.endswith(".yaml") for doc in yaml.safe_load_all(text) if doc]
    for obj in objects:
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition") and not obj["kind"].startswith("Cluster"):
            obj.setdefault("metadata", {}).setdefault("namespace", OPERATOR_NAMESPACE)
    return objects


def crd_files() -> list[Path]:
    return sorted((ROOT / "charts/botfleet/crds").glob("*.yaml"))


# --- Bots -----------------------------------------------------------------------------


def deep_merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base.get(key), value) if key in base else value
        return merged
    return copy.deepcopy(override)


def example_bot(example: str, name: str | None = None, **overrides: Any) -> dict[str, Any]:
    bot = load(ROOT / "k8s/examples" / example)
    bot["metadata"]["namespace"] = BOTS_NAMESPACE
    if name:
        bot["metadata"]["name"] = name
    bot["spec"] = deep_merge(bot["spec"], overrides)
    return bot


def post_json(url: str, body: Any, token: str | None = None, timeout: float = 60) -> tuple[int, Any]:
    if token:
        url += ("&" if "?" in url else "?") + f"token={token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def get_json(url: str, timeout: float = 30) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read()
            try:
                return response.status, json.loads(body)
            except ValueError:
                return response.status, body.decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except OSError as error:
        return 0, str(error)


def say(rasa_url: str, sender: str, text: str) -> list[str]:
    status, replies = post_json(f"{rasa_url}/webhooks/rest/webhook", {"sender": sender, "message": text})
    assert status == 200, (status, replies)
    return [reply.get("text", "") for reply in replies]


# A kubectl call can race a pod restart or a port not yet open: "not yet", not a failure.
TRANSIENT = (subprocess.CalledProcessError, OSError, KeyError, ValueError)


def eventually(check: Callable[[], Any], timeout: float, interval: float = 2.0, what: str = "condition") -> Any:
    """cluster_support.wait_for, tolerating the transient errors of a cluster in motion."""
    return wait_for(check, timeout, interval=interval, message=what, tolerate=TRANSIENT)


# --- model rollouts: variants of the demo model, and a Prometheus that scrapes the Bots --


def train_variant(directory: Path, name: str, edit: Callable[[dict[str, Any]], None]) -> str:
    """A model of the demo bot trained with its config changed by `edit` (a copy of the
    bot under .run, so the content-hash cache of ci/train.py applies); returns the
    archive's name in `directory`."""
    import shutil

    copy_dir = RUN / "variants" / name
    if copy_dir.exists():
        shutil.rmtree(copy_dir / "data", ignore_errors=True)
    copy_dir.mkdir(parents=True, exist_ok=True)
    for item in ("domain.yml", "data"):
        source = ROOT / "bots/demo" / item
        if source.is_dir():
            shutil.copytree(source, copy_dir / item, dirs_exist_ok=True)
        else:
            shutil.copy(source, copy_dir / item)
    config = yaml.safe_load((ROOT / "bots/demo/config.yml").read_text())
    edit(config)
    (copy_dir / "config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    model = run([sys.executable, str(ROOT / "ci/train.py"), str(copy_dir)]).stdout.strip()
    target = directory / f"{name}.tar.gz"
    target.write_bytes(Path(model).read_bytes())
    return target.name


PROMETHEUS_PORT = 19090


def service_monitor_targets(services: list[dict[str, Any]], endpoints: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the Prometheus Operator makes of charts/bot's ServiceMonitor, as file_sd
    target groups: every ready address of every Bot Service's port "http", labelled
    namespace, pod, bot, component and track from the Service, as its relabelings say.
    (Debian builds Prometheus without Kubernetes service discovery, so the tests list the
    endpoints themselves and Prometheus reads the file.)"""
    by_name = {s["metadata"]["name"]: s for s in services}
    groups = []
    for endpoint in endpoints:
        service = by_name.get(endpoint["metadata"]["name"])
        labels = ((service or {}).get("metadata") or {}).get("labels") or {}
        if labels.get("app.kubernetes.io/part-of") != "botfleet":
            continue
        for subset in endpoint.get("subsets") or []:
            ports = [p["port"] for p in subset.get("ports") or [] if p.get("name") == "http"]
            for address in subset.get("addresses") or []:
                for port in ports:
                    target = {"namespace": endpoint["metadata"]["namespace"], "pod": (address.get("targetRef") or {}).get("name", ""),
                              "bot": labels.get("botfleet.io/bot", ""), "component": labels.get("app.kubernetes.io/component", "")}
                    if labels.get("botfleet.io/track"):
                        target["track"] = labels["botfleet.io/track"]
                    groups.append({"targets": [f"{address['ip']}:{port}"], "labels": target})
    return groups


class Prometheus:
    """Debian's Prometheus on the node's address (the operator's pods query it there),
    scraping the Bots' pods over the pod network every 2 s; a thread keeps its target
    file in step with the API server's endpoints."""

    def __init__(self, node_ip: str, port: int = PROMETHEUS_PORT) -> None:
        import shutil

        self.url = f"http://{node_ip}:{port}"
        self.root = RUN / "prometheus"
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        self.targets = self.root / "targets.json"
        self.refresh()
        config = {
            "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
            "scrape_configs": [{"job_name": "bots", "metrics_path": "/metrics",
                                "file_sd_configs": [{"files": [str(self.targets)], "refresh_interval": "5s"}]}],
        }
        (self.root / "prometheus.yml").write_text(yaml.safe_dump(config))
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        self.log = open(self.root / "prometheus.log", "wb")  # noqa: SIM115 (the server's, closed in stop())
        self.process = subprocess.Popen([binary, f"--config.file={self.root / 'prometheus.yml'}", f"--storage.tsdb.path={self.root / 'data'}",
                                         f"--web.listen-address={node_ip}:{port}", "--storage.tsdb.retention.time=2h"],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()
        wait_for(self.ready, 60, interval=0.5, message="Prometheus ready")

    def refresh(self) -> None:
        listed = json.loads(kubectl("get", "services,endpoints", "-n", BOTS_NAMESPACE, "-o", "json").stdout)["items"]
        groups = service_monitor_targets([o for o in listed if o["kind"] == "Service"], [o for o in listed if o["kind"] == "Endpoints"])
        partial = self.targets.with_suffix(".part")
        partial.write_text(json.dumps(groups))
        partial.replace(self.targets)  # Prometheus never reads half a file

    def _follow(self) -> None:
        while not self.stopping.wait(2):
            try:
                self.refresh()
            except (RuntimeError, OSError, ValueError, subprocess.SubprocessError):
                continue  # the API server busy: the next round

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except OSError:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(self.root / 'prometheus.log').read_text()[-2000:]}") from None
            return False

    def stop(self) -> None:
        self.stopping.set()
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def prometheus_query(url: str, promql: str) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=10) as response:
        return list(json.loads(response.read())["data"]["result"])


class Conversations:
    """Users talking to a Bot through its gateway while a rollout runs: new
    conversations keep starting (so the canary gets its share of them) and every one
    says a few things, one message at a time. Records every sender id."""

    LINES = (
        ("hello", "I want to fly to Berlin", "next friday"),
        ("hi there", "what is the status of my order", "thanks"),
        ("good morning", "can I book a flight to Paris", "tomorrow"),
        ("hey", "where is my package", "bye"),
    )

    def __init__(self, gateway_url: str, prefix: str, users: int = 3, pause: float = 0.5) -> None:
        self.url, self.prefix, self.users, self.pause = gateway_url, prefix, users, pause
        self.senders: list[str] = []
        self.errors: list[str] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._user, args=(i,), daemon=True) for i in range(users)]

    def __enter__(self) -> Conversations:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        alive = [thread.is_alive() for thread in self.threads]
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=120)
        assert all(alive), f"a user thread died: {self.errors[-3:]}"

    def _user(self, index: int) -> None:
        number = 0
        while not self.stopping.is_set():
            sender = f"{self.prefix}-{index}-{number}"
            self.senders.append(sender)
            for text in self.LINES[number % len(self.LINES)]:
                if self.stopping.is_set():
                    return
                try:
                    status, replies = post_json(f"{self.url}/webhooks/rest/webhook", {"sender": sender, "message": text}, timeout=60)
                except OSError as error:  # the gateway restarting: users try again
                    status, replies = 0, str(error)
                    time.sleep(1)
                if status != 200:
                    self.errors.append(f"{sender}: {status} {replies}")
                time.sleep(self.pause)
            number += 1


def model_ids(rasa_url: str, token: str, sender: str, before: float | None = None) -> list[str]:
    """The model id Rasa recorded on each of the conversation's events (in order), up to
    a moment if given."""
    status, tracker = get_json(f"{rasa_url}/conversations/{sender}/tracker?token={token}")
    assert status == 200, (status, tracker)
    found = []
    for event in tracker["events"]:
        model = (event.get("metadata") or {}).get("model_id")
        if model and (before is None or event["timestamp"] < before):
            found.append(model)
    return found
