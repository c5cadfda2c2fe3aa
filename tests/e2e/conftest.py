"""End-to-end fixtures: the real stack (Rasa, action server, Redis, PostgreSQL,
RabbitMQ) started by ci/stack.py on its own ports, database, key prefix and queue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pika
import psycopg
import pytest
import redis
import requests

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / ".run/e2e-stack"
DATABASE = "botfleet_e2e"
ENV = {
    "BOTFLEET_STACK_DIR": str(RUN),
    "RASA_PORT": "15005",
    "ACTIONS_PORT": "15055",
    "GATEWAY_PORT": "18080",
    "BOTFLEET_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{DATABASE}",
    "BOTFLEET_REDIS_URL": "redis://127.0.0.1:6379/0",
    "BOTFLEET_REDIS_KEY_PREFIX": "botfleete2e",
    "BOTFLEET_RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:5672/",
    "BOTFLEET_EVENTS_QUEUE": "botfleet_e2e_events",
    "BOTFLEET_WINDOW_TURNS": "8",
    "BOTFLEET_EMBEDDED": "",
}


def stack(*args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "ci/stack.py"), *args], env={**os.environ, **ENV}, check=True)


def reset_services(env: dict[str, str] = ENV, run: Path = RUN) -> None:
    """Drops the stack's database, Redis keys, event queue and logs."""
    database = env["BOTFLEET_DATABASE_URL"].rsplit("/", 1)[1]
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    client = redis.Redis(host="127.0.0.1", port=6379)
    for key in client.scan_iter(f"{env['BOTFLEET_REDIS_KEY_PREFIX']}:*"):
        client.delete(key)
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672))
    connection.channel().queue_delete(env["BOTFLEET_EVENTS_QUEUE"])
    connection.close()
    for log in run.glob("*.log"):
        log.unlink()


class Bot:
    """A REST-channel client of the running bot: it talks through the webhook gateway,
    as a channel does, and reads trackers from Rasa's API."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.rasa = f"http://127.0.0.1:{config['rasa_port']}"
        self.gateway = f"http://127.0.0.1:{config['gateway_port']}"
        self.actions = f"http://127.0.0.1:{config['actions_port']}"
        self.token = config["rasa_token"]
        self.agent_headers = {"Authorization": f"Bearer {config['agent_token']}"}

    def say(self, sender: str, text: str) -> list[dict[str, Any]]:
        response = requests.post(f"{self.gateway}/webhooks/rest/webhook", json={"sender": sender, "message": text}, timeout=60)
        response.raise_for_status()
        return response.json()

    def texts(self, sender: str, text: str) -> list[str]:
        return [m.get("text", "") for m in self.say(sender, text)]

    def tracker(self, sender: str) -> dict[str, Any]:
        response = requests.get(f"{self.rasa}/conversations/{sender}/tracker", params={"token": self.token}, timeout=30)
        response.raise_for_status()
        return response.json()

    def slot(self, sender: str, name: str) -> Any:
        return self.tracker(sender)["slots"].get(name)


@pytest.fixture(scope="session")
def bot() -> Bot:
    reset_services()
    stack("up")
    config = json.loads((RUN / "stack.json").read_text())
    assert all(config["available"].values()), f"the e2e suite needs the real services: {config['available']}"
    try:
        yield Bot(config)
    finally:
        stack("down")


@pytest.fixture
def sender() -> str:
    return f"e2e-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def database():
    with psycopg.connect(ENV["BOTFLEET_DATABASE_URL"], autocommit=True) as connection:
        yield connection
