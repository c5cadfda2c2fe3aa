"""botfleet's images, built from the project's own Dockerfiles with podman (ci/images.py)
and run for real, the way the charts run them: as uid 1001, with a read-only root
filesystem, /tmp as the only writable place, no capabilities and no privilege escalation.

- Every image builds, and a second build rebuilds nothing (each image is labelled with a
  hash of its inputs).
- The action server answers GET /health on the port given as container args (the chart
  sets only `args`), and its image's HEALTHCHECK passes with the default CMD.
- Rasa starts with the baked demo model on the chart's command line and config (in-memory
  stores, the action server beside it as in a pod), is ready, answers a REST message, and
  its HEALTHCHECK passes.
- Model serving imports a model archive at start (as the chart's init container leaves it),
  is ready, classifies a text, runs CPU-only torch, and its HEALTHCHECK passes.
- The operator's image prints its usage and can render a Bot with the chart baked into it.

Rasa, the action server and model serving run in network namespaces of their own
(`--network none`; Rasa and its action server share one, like containers of a pod) and are
probed from inside with `podman exec`, so nothing collides with ports a running stack
uses; the action server's own check listens on the host's loopback, on a free port.

Cold, building the four images takes 20 to 35 minutes on 2 cores (Rasa's alone 15 to 25:
pip and the demo bot's training); warm, nothing is rebuilt and this module takes about 3
minutes, mostly Rasa loading its model (about 2 minutes, as on the host).
BOTFLEET_SKIP_IMAGES=1 skips it.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "ci"))
import images  # noqa: E402  (ci/images.py)

pytestmark = pytest.mark.skipif(os.environ.get("BOTFLEET_SKIP_IMAGES") == "1", reason="BOTFLEET_SKIP_IMAGES=1")

TEST_LABEL = "botfleet.images-test"
# How the charts run every container (securityContext and the /tmp emptyDir).
AS_THE_CHART_RUNS_IT = [
    "--user", "1001:1001", "--read-only", "--tmpfs", "/tmp:rw,exec,mode=1777",
    "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--label", f"{TEST_LABEL}=1",
]
# The in-memory branch of charts/bot/templates/configmap.yaml, with the action server on
# the pod's loopback.
RASA_ENDPOINTS = """\
action_endpoint:
  url: http://127.0.0.1:5055/webhook
tracker_store:
  type: botfleet_rasa.tracker_store.WindowedInMemoryTrackerStore
  window_turns: 20
  archive_url: ${BOTFLEET_DATABASE_URL}
lock_store:
  type: botfleet_rasa.lock_store.LeasedInMemoryLockStore
"""
RASA_CREDENTIALS = "botfleet_rasa.channels.OpsInput:\nrest:\n"
# charts/bot/templates/rasa.yaml's command and args (no Vault, no remote model storage).
RASA_COMMAND = ("exec rasa run --endpoints /app/config/endpoints.yml --credentials /app/config/credentials.yml"
                " --port 5005 --enable-api --auth-token=\"$RASA_TOKEN\" --logging-config-file /etc/botfleet/logging.yml")
# An HTTP request from inside a container (every image has Python): prints the status and body.
PROBE = """\
import sys, urllib.error, urllib.request
data = sys.argv[2].encode() if len(sys.argv) > 2 else None
request = urllib.request.Request(sys.argv[1], data=data, headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=20) as response:
        print(response.status); print(response.read().decode())
except urllib.error.HTTPError as error:
    print(error.code); print(error.read().decode())
except OSError as error:
    print(0); print(error)
"""


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    images.configure_podman()
    result = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def remove(*names: str) -> None:
    """One by one, in order: a container that shares another's network goes first."""
    for name in names:
        podman("rm", "-f", "-t", "2", name, check=False)


def logs(name: str) -> str:
    result = podman("logs", "--tail", "60", name, check=False)
    return (result.stdout + result.stderr)[-6000:]


def running(name: str) -> bool:
    return podman("inspect", "--format", "{{.State.Running}}", name, check=False).stdout.strip() == "true"


def probe(name: str, url: str, body: Any = None) -> tuple[int, str]:
    """(status, body) of a request made inside container NAME; status 0: no connection."""
    args = ["exec", name, "python", "-c", PROBE, url] + ([json.dumps(body)] if body is not None else [])
    result = podman(*args, check=False, timeout=60)
    status, _, text = result.stdout.partition("\n")
    return (int(status) if status.strip().isdigit() else 0), text.strip() or result.stderr.strip()


def wait_ready(name: str, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    status, text = 0, ""
    while time.monotonic() < deadline:
        if not running(name):
            raise AssertionError(f"{name} exited before {url} answered:\n{logs(name)}")
        status, text = probe(name, url)
        if status == 200:
            return
        time.sleep(2)
    raise AssertionError(f"{url} in {name}: {status} {text[:300]} after {timeout:.0f} s\n{logs(name)}")


def healthcheck(name: str) -> None:
    """The image's own HEALTHCHECK, run now."""
    result = podman("healthcheck", "run", name, check=False, timeout=60)
    assert result.returncode == 0, f"HEALTHCHECK of {name}: {result.stdout} {result.stderr}\n{logs(name)}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def readable_dir(prefix: str) -> Path:
    """A folder uid 1001 can read when it is mounted into a container."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def start(name: str, image: str, *args: str, network: str = "none", command: tuple[str, ...] = ()) -> str:
    podman("run", "-d", "--name", name, "--network", network, *AS_THE_CHART_RUNS_IT, *args, image, *command)
    return name


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built() -> dict[str, dict[str, Any]]:
    stale = podman("ps", "-a", "--filter", f"label={TEST_LABEL}", "--format", "{{.Names}}", check=False).stdout.split()
    remove(*stale)  # left by an interrupted run of this module
    return images.build_images()


def nlu_archive() -> tuple[str, Path] | None:
    """A BentoML NLU model of the demo bot as an archive (what the chart's init container
    downloads), or None without the serving venv. The encoder stays frozen (--epochs 0,
    about 30 s): this checks the image serves a model, not the model's quality. Trained and
    exported once per content of its inputs, outside the repository (fresh clones too)."""
    train = ROOT / ".venvs/serving/bin/botfleet-serving-train"
    if not train.exists():
        return None
    digest = hashlib.sha256()
    for path in [ROOT / "bots/demo/data/nlu.yml", *sorted((ROOT / "model-serving/botfleet_serving").rglob("*.py"))]:
        digest.update(path.read_bytes())
    tag = f"botfleet-nlu:images-test-{digest.hexdigest()[:12]}"
    archive = images.STATE / "models" / f"{tag.replace(':', '-')}.bentomodel"
    if not archive.is_file():
        archive.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "BENTOML_HOME": str(images.STATE / "bentoml")}
        subprocess.run([str(train), "--nlu", str(ROOT / "bots/demo/data/nlu.yml"), "--tag", tag, "--epochs", "0"],
                       check=True, capture_output=True, env=env, timeout=1800)
        subprocess.run([str(train.parent / "bentoml"), "models", "export", tag, str(archive)], check=True,
                       capture_output=True, env=env, timeout=600)
    archive.chmod(archive.stat().st_mode | stat.S_IROTH)
    return tag, archive


@pytest.fixture(scope="module", autouse=True)
def services(built: dict[str, dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Starts the long-lived containers at the module's start, all at once: Rasa takes about
    two minutes to load the demo model (TensorFlow, as on the host), and the other tests run
    meanwhile. Rasa and its action server share a network namespace, as containers of a pod."""
    config = readable_dir("botfleet-rasa-config-")
    (config / "endpoints.yml").write_text(RASA_ENDPOINTS)
    (config / "credentials.yml").write_text(RASA_CREDENTIALS)
    for f in config.iterdir():
        f.chmod(0o644)
    names: dict[str, Any] = {name: f"botfleet-images-test-{name}-{os.getpid()}" for name in ("rasa", "actions", "model-serving", "gateway")}
    try:
        start(names["rasa"], built["rasa"]["local"], "-v", f"{config}:/app/config:ro", "--entrypoint", '["sh", "-c"]',
              "-e", "SANIC_WORKERS=1", "-e", "LOG_LEVEL=INFO", "-e", "BOTFLEET_SERVICE_NAME=rasa",
              "-e", "BOTFLEET_BOT=images-test", "-e", "BOTFLEET_MODEL_VERSION=demo", "-e", "HOME=/tmp",
              "-e", "RASA_TOKEN=images-test-token", "-e", "BOTFLEET_DATABASE_URL=sqlite:////tmp/archive.sqlite3",
              command=(RASA_COMMAND,))
        start(names["actions"], built["action-server"]["local"], "-e", "BOTFLEET_SERVICE_NAME=action-server",
              "-e", "BOTFLEET_DATABASE_URL=sqlite:////tmp/botfleet.sqlite3", "-e", "RASA_URL=http://127.0.0.1:5005",
              network=f"container:{names['rasa']}", command=("--port", "5055"))
        # The gateway in front of Rasa, as charts/bot/templates/gateway.yaml runs it (its
        # args; no routing file: every conversation to the stable track). No Redis in
        # this pod: it routes to stable without one.
        start(names["gateway"], built["gateway"]["local"], "-e", "BOTFLEET_SERVICE_NAME=gateway",
              "-e", "BOTFLEET_STABLE_URL=http://127.0.0.1:5005", "-e", "BOTFLEET_REDIS_URL=redis://127.0.0.1:1/0",
              "-e", "BOTFLEET_KEY_PREFIX=imagestest:", network=f"container:{names['rasa']}",
              command=("--host", "0.0.0.0", "--port", "8080"))
        model = nlu_archive()
        if model is None:
            names["model-serving"] = None
        else:
            tag, archive = model
            names["nlu_tag"] = tag
            # As charts/bot/templates/model-serving.yaml: the store in /tmp, the archive mounted read-only.
            start(names["model-serving"], built["model-serving"]["local"], "-v", f"{archive}:/models/nlu.bentomodel:ro",
                  "-e", f"BOTFLEET_NLU_MODEL_TAG={tag}", "-e", "BOTFLEET_SERVICE_NAME=model-serving",
                  "-e", "HOME=/tmp", "-e", "BENTOML_HOME=/tmp/bentoml",
                  # One worker (default: one per CPU) leaves a core to Rasa, loading meanwhile.
                  "-e", "BOTFLEET_SERVING_WORKERS=1",
                  "-e", "BOTFLEET_NLU_MODEL_ARCHIVE=/models/nlu.bentomodel")
        yield names
    finally:
        remove(*(n for n in (names["gateway"], names["actions"], names["rasa"], names["model-serving"]) if n))
        for f in config.iterdir():
            f.unlink()
        config.rmdir()


# --- tests ------------------------------------------------------------------------------


def test_every_image_builds_and_a_warm_build_rebuilds_nothing(built: dict[str, dict[str, Any]]) -> None:
    assert set(built) == set(images.IMAGES)
    again = images.build_images()
    assert {name: b["cached"] for name, b in again.items()} == dict.fromkeys(images.IMAGES, True)
    for name, b in again.items():
        assert b["id"] == built[name]["id"]
        assert images.image_label(b["local"]) == b["inputs_hash"]
        # The name a pod's `botfleet/NAME:0.1.0` becomes in containerd is the same image.
        assert images.image_id(images.cluster_ref(name)) == b["id"]
    listed = images.list_images()
    assert {n: v["id"] for n, v in listed.items()} == {n: b["id"] for n, b in again.items()}


@pytest.mark.parametrize("name", list(images.IMAGES))
def test_image_runs_as_non_root(built: dict[str, dict[str, Any]], name: str) -> None:
    image = built[name]["local"]
    user = (images.inspect(image) or {})["Config"].get("User", "")
    assert user and user.split(":")[0] not in ("0", "root"), f"{name}: USER {user!r}"
    ids = podman("run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c", "id -u; id -g").stdout.split()
    assert ids == ["1001", "1001"], f"{name} runs as {ids} (the charts use runAsUser/runAsGroup 1001)"


def test_action_server_answers_health_on_the_port_its_args_give(built: dict[str, dict[str, Any]]) -> None:
    port = free_port()
    name = f"botfleet-images-test-actions-host-{os.getpid()}"
    try:
        # Only args, as charts/bot/templates/actions.yaml sets: they replace the CMD.
        start(name, built["action-server"]["local"], "-e", "BOTFLEET_DATABASE_URL=sqlite:////tmp/botfleet.sqlite3",
              network="host", command=("--host", "127.0.0.1", "--port", str(port)))
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                    assert response.status == 200
                    assert json.loads(response.read()) == {"status": "ok"}
                    break
            except OSError:
                if not running(name) or time.monotonic() > deadline:
                    raise AssertionError(f"the action server did not answer on {port}:\n{logs(name)}") from None
                time.sleep(1)
    finally:
        remove(name)


def test_operator_prints_usage_and_renders_a_bot_with_its_baked_chart(built: dict[str, dict[str, Any]]) -> None:
    image = built["operator"]["local"]
    usage = podman("run", "--rm", "--network", "none", *AS_THE_CHART_RUNS_IT, image, "--help")
    assert "usage: botfleet-operator" in usage.stdout
    # What the operator does for every Bot, with the chart and CRD at the paths its image sets.
    render = """\
import json, sys, yaml
from botfleet_operator.builders import desired_objects
from botfleet_operator.crd import validate_bot
bot = next(d for d in yaml.safe_load_all(sys.stdin) if d and d.get("kind") == "Bot")
bot["metadata"].setdefault("namespace", "bots")
bot["metadata"]["uid"] = "images-test"
print(json.dumps({"errors": validate_bot(bot), "kinds": sorted({o["kind"] for o in desired_objects(bot)})}))
"""
    example = (ROOT / "k8s/examples/demo-bot.yaml").read_text()
    result = subprocess.run(["podman", "run", "--rm", "-i", "--network", "none", *AS_THE_CHART_RUNS_IT,
                             "--entrypoint", "python", image, "-c", render], input=example, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    rendered = json.loads(result.stdout)
    assert rendered["errors"] == []
    assert {"Deployment", "Service", "ConfigMap"} <= set(rendered["kinds"]), rendered


def test_model_serving_imports_its_archive_and_classifies(services: dict[str, Any]) -> None:
    model_serving = services["model-serving"]
    if model_serving is None:
        pytest.skip("no .venvs/serving (make venvs) to train an NLU model with")
    wait_ready(model_serving, "http://127.0.0.1:3000/readyz", timeout=300)
    status, text = probe(model_serving, "http://127.0.0.1:3000/classify_one", {"text": "hello there"})
    assert status == 200, text
    ranking = json.loads(text)
    assert ranking["intent"]["name"] == "greet", ranking
    assert ranking["intent_ranking"], ranking
    status, text = probe(model_serving, "http://127.0.0.1:3000/model/")
    assert status == 200 and json.loads(text)["tag"] == services["nlu_tag"], text
    healthcheck(model_serving)
    # CPU-only torch (the image's build asserts it too).
    probed = podman("exec", model_serving, "python", "-c", "import torch; print(torch.__version__, torch.cuda.is_available())")
    version, cuda = probed.stdout.split()
    assert version.endswith("+cpu") and cuda == "False", probed.stdout


def test_action_server_healthcheck_beside_rasa(services: dict[str, Any]) -> None:
    actions = services["actions"]
    wait_ready(actions, "http://127.0.0.1:5055/health", timeout=60)
    healthcheck(actions)


def test_rasa_is_ready_with_the_baked_model_and_answers_a_rest_message(services: dict[str, Any]) -> None:
    wait_ready(services["rasa"], "http://127.0.0.1:5005/health/ready", timeout=300)
    status, text = probe(services["rasa"], "http://127.0.0.1:5005/webhooks/rest/webhook", {"sender": "images-test", "message": "hi"})
    assert status == 200, text
    replies = json.loads(text)
    assert replies and "botfleet support assistant" in replies[0]["text"], replies
    status, text = probe(services["rasa"], "http://127.0.0.1:5005/status?token=images-test-token")
    assert status == 200 and json.loads(text)["model_file"], text
    healthcheck(services["rasa"])


def test_the_gateway_forwards_a_rest_message_to_rasa_and_refuses_a_bad_body(services: dict[str, Any]) -> None:
    gateway = services["gateway"]
    wait_ready(gateway, "http://127.0.0.1:8080/healthz", timeout=60)
    wait_ready(services["rasa"], "http://127.0.0.1:5005/health/ready", timeout=300)
    status, text = probe(gateway, "http://127.0.0.1:8080/webhooks/rest/webhook", {"sender": "images-gateway", "message": "hi"})
    assert status == 200, text
    assert "botfleet support assistant" in json.loads(text)[0]["text"]
    status, text = probe(gateway, "http://127.0.0.1:8080/webhooks/rest/webhook", [1, 2])
    assert 400 <= status < 500, (status, text)
    healthcheck(gateway)
