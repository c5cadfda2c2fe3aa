#!/usr/bin/env python3
"""Runs the demo bot locally: `up`, `down`, `status`, `restart SERVICE`,
`replica PORT` (one more Rasa sharing the stores), `stop NAME`.

`up` trains when the bot changed, prepares the database, starts the action server, the
Rasa server and the webhook gateway in front of it, waits until they are healthy, prints
the endpoints and returns.
Redis, PostgreSQL and RabbitMQ are used when reachable; each missing one is replaced by
an embedded default (in-memory tracker and lock store, SQLite, no broker), with a notice.

Settings (environment):
  BOTFLEET_REDIS_URL      redis://127.0.0.1:6379/0
  BOTFLEET_DATABASE_URL   postgresql://postgres@127.0.0.1:5432/botfleet
  BOTFLEET_RABBITMQ_URL   amqp://guest:guest@127.0.0.1:5672/
  BOTFLEET_EVENTS_QUEUE   botfleet_events
  BOTFLEET_WINDOW_TURNS   20      user turns kept in the active tracker
  BOTFLEET_EMBEDDED       1 to ignore the real services
  RASA_PORT / ACTIONS_PORT   5005 / 5055
  GATEWAY_PORT            8080: the webhook gateway, where channels enter (in front of Rasa)
  RASA_TOKEN / BOTFLEET_AGENT_TOKEN   API tokens (generated once into the run dir)
  SANIC_WORKERS           Rasa workers (1; socketio needs 1)
  BOTFLEET_PIPELINE       diet (config.yml, in-process NLU) or botfleet (config.botfleet.yml:
                          intents from the BentoML model server, which `up` trains and starts)
  NLU_PORT                3000: the model server (botfleet pipeline)
  BENTOML_HOME            .run/bentoml: the BentoML model store
  BOTFLEET_STACK_DIR      .run/stack: pids, logs, rendered endpoints
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
BOT = ROOT / "bots/demo"
RASA_VENV = ROOT / ".venvs/rasa/bin"
ACTIONS_VENV = ROOT / ".venvs/actions/bin"
SERVING_VENV = ROOT / ".venvs/serving/bin"
GATEWAY_VENV = ROOT / ".venvs/gateway/bin"
# stock: Rasa's default config and stores (in memory, no broker), for benchmarks only.
PIPELINE_CONFIGS = {"diet": "config.yml", "botfleet": "config.botfleet.yml", "stock": "config.stock.yml"}
NLU_MODEL_NAME = "botfleet-nlu"


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def stack_dir() -> Path:
    path = Path(env("BOTFLEET_STACK_DIR", str(ROOT / ".run/stack")))
    path.mkdir(parents=True, exist_ok=True)
    return path


def reachable(url: str, default_port: int) -> bool:
    parsed = urllib.parse.urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1.5):
            return True
    except OSError:
        return False


def persistent_token(run: Path, name: str, variable: str) -> str:
    if os.environ.get(variable):
        return os.environ[variable]
    path = run / name
    if not path.exists():
        path.write_text(secrets.token_hex(24))
        path.chmod(0o600)
    return path.read_text().strip()


def render_endpoints(run: Path, available: dict[str, bool], settings: dict[str, str], pipeline: str = "diet") -> Path:
    """The bot's production endpoints.yml with every unavailable service swapped for
    its embedded default."""
    endpoints: dict[str, Any] = yaml.safe_load((BOT / "endpoints.yml").read_text())
    if pipeline == "stock":  # Rasa's defaults: in-memory tracker and lock store, no broker
        endpoints = {"action_endpoint": endpoints["action_endpoint"]}
        path = run / "endpoints.yml"
        path.write_text(yaml.safe_dump(endpoints, sort_keys=False))
        return path
    if not available["redis"]:
        endpoints["tracker_store"] = {
            "type": "botfleet_rasa.tracker_store.WindowedInMemoryTrackerStore",
            "window_turns": "${BOTFLEET_WINDOW_TURNS}",
            "archive_url": "${BOTFLEET_DATABASE_URL}",
        }
        endpoints["lock_store"] = {"type": "botfleet_rasa.lock_store.LeasedInMemoryLockStore"}
    if not available["rabbitmq"]:
        endpoints.pop("event_broker", None)
    if not settings.get("REDIS_PASSWORD"):
        for section in ("tracker_store", "lock_store"):
            endpoints[section].pop("password", None)
    path = run / "endpoints.yml"
    path.write_text(yaml.safe_dump(endpoints, sort_keys=False))
    return path


def service_settings(run: Path) -> tuple[dict[str, str], dict[str, bool]]:
    embedded = env("BOTFLEET_EMBEDDED", "") == "1"
    redis_url = env("BOTFLEET_REDIS_URL", "redis://127.0.0.1:6379/0")
    database_url = env("BOTFLEET_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/botfleet")
    rabbit_url = env("BOTFLEET_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
    available = {
        "redis": not embedded and reachable(redis_url, 6379),
        "postgresql": not embedded and reachable(database_url, 5432),
        "rabbitmq": not embedded and reachable(rabbit_url, 5672),
    }
    if not available["postgresql"]:
        database_url = f"sqlite:///{run / 'botfleet.sqlite3'}"
    redis = urllib.parse.urlparse(redis_url)
    rabbit = urllib.parse.urlparse(rabbit_url)
    settings = {
        "ACTION_SERVER_URL": f"http://127.0.0.1:{env('ACTIONS_PORT', '5055')}/webhook",
        "REDIS_HOST": redis.hostname or "127.0.0.1",
        "REDIS_PORT": str(redis.port or 6379),
        "REDIS_DB": (redis.path or "/0").strip("/") or "0",
        "REDIS_PASSWORD": redis.password or "",
        "REDIS_KEY_PREFIX": env("BOTFLEET_REDIS_KEY_PREFIX", "botfleet"),
        "BOTFLEET_WINDOW_TURNS": env("BOTFLEET_WINDOW_TURNS", "20"),
        "BOTFLEET_DATABASE_URL": database_url,
        "RABBITMQ_HOST": rabbit.hostname or "127.0.0.1",
        "RABBITMQ_PORT": str(rabbit.port or 5672),
        "RABBITMQ_USERNAME": urllib.parse.unquote(rabbit.username or "guest"),
        "RABBITMQ_PASSWORD": urllib.parse.unquote(rabbit.password or "guest"),
        "RABBITMQ_QUEUE": env("BOTFLEET_EVENTS_QUEUE", "botfleet_events"),
    }
    return settings, available


def wait_healthy(name: str, url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            current_start = log.read_text(errors="replace").rsplit("--- ", 1)[-1]
            tail = "\n".join(current_start.splitlines()[-30:])
            raise SystemExit(f"error: {name} exited with {process.returncode}; last log lines:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1)
    raise SystemExit(f"error: {name} not healthy at {url} after {timeout:.0f}s; see {log}")


def start(name: str, command: list[str], run: Path, extra_env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    log = run / f"{name}.log"
    with log.open("a") as marker:
        marker.write(f"--- {name} starting at {time.strftime('%Y-%m-%dT%H:%M:%S')} ---\n")
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, **extra_env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    pids = load_pids(run)
    pids[name] = process.pid
    (run / "pids.json").write_text(json.dumps(pids))
    return process


def load_pids(run: Path) -> dict[str, int]:
    path = run / "pids.json"
    return json.loads(path.read_text()) if path.exists() else {}


def stop(name: str, run: Path) -> None:
    pids = load_pids(run)
    pid = pids.pop(name, None)
    (run / "pids.json").write_text(json.dumps(pids))
    if pid is None:
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(50):
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def prepare(run: Path) -> dict[str, Any]:
    settings, available = service_settings(run)
    for service, up in available.items():
        if not up:
            print(f"notice: {service} not reachable; using its embedded default", file=sys.stderr)
    subprocess.run(
        [str(ACTIONS_VENV / "python"), "-m", "botfleet_common.db", "--url", settings["BOTFLEET_DATABASE_URL"], "--seed"],
        check=True,
        stdout=sys.stderr,
    )
    pipeline = env("BOTFLEET_PIPELINE", "diet")
    if pipeline not in PIPELINE_CONFIGS:
        raise SystemExit(f"error: BOTFLEET_PIPELINE={pipeline!r}: use one of {', '.join(PIPELINE_CONFIGS)}")
    model = subprocess.run(
        [sys.executable, str(ROOT / "ci/train.py"), str(BOT), "--config", PIPELINE_CONFIGS[pipeline]],
        check=True, stdout=subprocess.PIPE, text=True,
    ).stdout.strip()
    endpoints = render_endpoints(run, available, settings, pipeline)
    config = {
        "settings": settings,
        "available": available,
        "model": model,
        "endpoints": str(endpoints),
        "pipeline": pipeline,
        "nlu_tag": train_nlu_model() if pipeline == "botfleet" else None,
        "nlu_port": env("NLU_PORT", "3000"),
        "bentoml_home": bentoml_home(),
        "rasa_port": env("RASA_PORT", "5005"),
        "actions_port": env("ACTIONS_PORT", "5055"),
        "gateway_port": env("GATEWAY_PORT", "8080"),
        "rasa_token": persistent_token(run, "rasa_token", "RASA_TOKEN"),
        "agent_token": persistent_token(run, "agent_token", "BOTFLEET_AGENT_TOKEN"),
    }
    (run / "stack.json").write_text(json.dumps(config, indent=2))
    return config


def bentoml_home() -> str:
    return env("BENTOML_HOME", str(ROOT / ".run/bentoml"))


def train_nlu_model() -> str:
    """Trains the model server's NLU model unless the store already holds one for this
    data and training code (the tag's version is their content hash)."""
    digest = hashlib.sha256()
    sources = [BOT / "data/nlu.yml", *sorted((ROOT / "model-serving/botfleet_serving").glob("*.py"))]
    for path in sources:
        digest.update(path.read_bytes())
    tag = f"{NLU_MODEL_NAME}:{digest.hexdigest()[:16]}"
    home = bentoml_home()
    if (Path(home) / "models" / NLU_MODEL_NAME / tag.split(":")[1]).is_dir():
        print(f"NLU model up to date: {tag}", file=sys.stderr)
        return tag
    print(f"training the NLU model {tag} (a few minutes on 2 cores)", file=sys.stderr)
    subprocess.run(
        [str(SERVING_VENV / "botfleet-serving-train"), "--nlu", str(BOT / "data/nlu.yml"), "--tag", tag],
        check=True, stdout=sys.stderr, env={**os.environ, "BENTOML_HOME": home},
    )
    return tag


def start_model_serving(run: Path, config: dict[str, Any]) -> None:
    port = config["nlu_port"]
    process = start(
        "model-serving",
        [str(SERVING_VENV / "bentoml"), "serve", "botfleet_serving.service:NLUService", "--host", "127.0.0.1", "--port", port],
        run,
        {"BENTOML_HOME": config["bentoml_home"], "BOTFLEET_NLU_MODEL_TAG": config["nlu_tag"]},
        ROOT / "model-serving",
    )
    wait_healthy("model serving", f"http://127.0.0.1:{port}/readyz", process, run / "model-serving.log", 180)


def start_actions(run: Path, config: dict[str, Any]) -> None:
    port = config["actions_port"]
    process = start(
        "actions",
        [str(ACTIONS_VENV / "python"), "-m", "botfleet_actions", "--host", "127.0.0.1", "--port", port],
        run,
        {
            "BOTFLEET_DATABASE_URL": config["settings"]["BOTFLEET_DATABASE_URL"],
            "BOTFLEET_AGENT_TOKEN": config["agent_token"],
            "RASA_URL": f"http://127.0.0.1:{config['rasa_port']}",
            "RASA_TOKEN": config["rasa_token"],
            "BOTFLEET_SERVICE_NAME": "action-server",
        },
        ROOT,
    )
    wait_healthy("action server", f"http://127.0.0.1:{port}/health", process, run / "actions.log", 60)


def start_rasa(run: Path, config: dict[str, Any], port: str | None = None) -> None:
    """Starts Rasa; with a port other than the stack's, an extra replica ("pod") that
    shares the stack's stores, as several pods of one bot do in a cluster."""
    port = port or config["rasa_port"]
    name = "rasa" if port == config["rasa_port"] else f"rasa-{port}"
    workers = env("SANIC_WORKERS", "1")
    extra = {
        **config["settings"],
        "SANIC_WORKERS": workers,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        # Import-time deprecation noise of Rasa's pinned libraries, not actionable here.
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
        "BOTFLEET_SERVICE_NAME": "rasa",
    }
    if config.get("pipeline") == "botfleet":
        extra["BOTFLEET_NLU_URL"] = f"http://127.0.0.1:{config['nlu_port']}"
    if workers != "1":
        prometheus_dir = run / "prometheus"
        prometheus_dir.mkdir(exist_ok=True)
        for stale in prometheus_dir.glob("*.db"):
            stale.unlink()
        extra["PROMETHEUS_MULTIPROC_DIR"] = str(prometheus_dir)
    process = start(
        name,
        [
            str(RASA_VENV / "rasa"), "run",
            "--model", config["model"],
            "--endpoints", config["endpoints"],
            "--credentials", str(BOT / "credentials.yml"),
            "--port", port, "--interface", "127.0.0.1",
            "--enable-api", f"--auth-token={config['rasa_token']}",
            "--cors", "*",
            "--logging-config-file", str(ROOT / "services/rasa/logging.yml"),
        ],
        run,
        extra,
        BOT,
    )
    wait_healthy(name, f"http://127.0.0.1:{port}/health/ready", process, run / f"{name}.log", 300)


def start_gateway(run: Path, config: dict[str, Any]) -> None:
    """The webhook gateway in front of Rasa, as in a cluster: one track (no rollout runs
    locally), conversations recorded in Redis when it is reachable."""
    port = config["gateway_port"]
    settings = config["settings"]
    extra = {
        "BOTFLEET_STABLE_URL": f"http://127.0.0.1:{config['rasa_port']}",
        "BOTFLEET_SERVICE_NAME": "gateway",
        "BOTFLEET_BOT": "demo",
        "BOTFLEET_KEY_PREFIX": f"{settings['REDIS_KEY_PREFIX']}:",
    }
    if config["available"]["redis"]:
        password = f":{urllib.parse.quote(settings['REDIS_PASSWORD'])}@" if settings["REDIS_PASSWORD"] else ""
        extra["BOTFLEET_REDIS_URL"] = f"redis://{password}{settings['REDIS_HOST']}:{settings['REDIS_PORT']}/{settings['REDIS_DB']}"
    else:
        # No Redis: nothing to keep a conversation's track in, and one track to send it to.
        extra["BOTFLEET_REDIS_URL"] = "redis://127.0.0.1:1/0"
    process = start("gateway", [str(GATEWAY_VENV / "python"), "-m", "botfleet_gateway", "--host", "127.0.0.1", "--port", port],
                    run, extra, ROOT)
    wait_healthy("gateway", f"http://127.0.0.1:{port}/readyz", process, run / "gateway.log", 60)


def up() -> None:
    run = stack_dir()
    down(quiet=True)
    config = prepare(run)
    if config["pipeline"] == "botfleet":
        start_model_serving(run, config)
    start_actions(run, config)
    start_rasa(run, config)
    start_gateway(run, config)
    available = config["available"]
    rasa = f"http://127.0.0.1:{config['rasa_port']}"
    actions = f"http://127.0.0.1:{config['actions_port']}"
    gateway = f"http://127.0.0.1:{config['gateway_port']}"
    print(
        f"""
botfleet demo bot is up ({'real services' if all(available.values()) else 'with embedded defaults'}):
  REST channel     {gateway}/webhooks/rest/webhook   (through the gateway; Rasa itself on {rasa})
  socket.io        {gateway}/socket.io
  Gateway metrics  {gateway}/metrics
  Rasa HTTP API    {rasa}/status?token=$(cat {run}/rasa_token)
  Rasa metrics     {rasa}/metrics     readiness {rasa}/health/ready
  NLU pipeline     {config['pipeline']}{f"  (model server http://127.0.0.1:{config['nlu_port']}, model {config['nlu_tag']})" if config['nlu_tag'] else ''}
  Action server    {actions}/webhook   metrics {actions}/metrics
  Agent API        {actions}/agent/handoffs  (Authorization: Bearer $(cat {run}/agent_token))
  Stores           redis={available['redis']} postgresql={available['postgresql']} rabbitmq={available['rabbitmq']}
  Logs             {run}/rasa.log {run}/actions.log {run}/gateway.log
Try: curl -s -XPOST {gateway}/webhooks/rest/webhook -d '{{"sender": "me", "message": "hi"}}'
"""
    )


def down(quiet: bool = False) -> None:
    run = stack_dir()
    for name in list(load_pids(run)):
        stop(name, run)
    if not quiet:
        print("botfleet demo bot stopped")


def restart(service: str) -> None:
    run = stack_dir()
    config = json.loads((run / "stack.json").read_text())
    stop(service, run)
    {"actions": start_actions, "rasa": start_rasa, "model-serving": start_model_serving, "gateway": start_gateway}[service](run, config)


def status() -> int:
    run = stack_dir()
    alive = {}
    for name, pid in load_pids(run).items():
        try:
            os.killpg(pid, 0)
            alive[name] = True
        except ProcessLookupError:
            alive[name] = False
    print(json.dumps(alive))
    return 0 if alive and all(alive.values()) else 1


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "up"
    if command == "up":
        up()
    elif command == "down":
        down()
    elif command == "status":
        return status()
    elif command == "restart" and len(argv) == 3 and argv[2] in ("actions", "rasa", "model-serving", "gateway"):
        restart(argv[2])
    elif command == "replica" and len(argv) == 3 and argv[2].isdigit():
        run = stack_dir()
        start_rasa(run, json.loads((run / "stack.json").read_text()), port=argv[2])
    elif command == "stop" and len(argv) == 3:
        stop(argv[2], stack_dir())
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
