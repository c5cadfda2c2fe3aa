"""`make up` on a machine without Redis, PostgreSQL or RabbitMQ: embedded defaults."""

import json
import os
import subprocess
import sys

import pytest
import requests
from conftest import ROOT

RUN = ROOT / ".run/e2e-embedded"
ENV = {
    "BOTFLEET_STACK_DIR": str(RUN),
    "BOTFLEET_EMBEDDED": "1",
    "RASA_PORT": "16005",
    "ACTIONS_PORT": "16055",
    "GATEWAY_PORT": "16080",
    "BOTFLEET_WINDOW_TURNS": "3",
}


def stack(*args):
    return subprocess.run([sys.executable, str(ROOT / "ci/stack.py"), *args], env={**os.environ, **ENV}, capture_output=True, text=True, check=True)


@pytest.fixture(scope="module")
def embedded():
    if RUN.exists():
        for stale in RUN.glob("*.sqlite3"):
            stale.unlink()
    started = stack("up")
    try:
        yield started, json.loads((RUN / "stack.json").read_text())
    finally:
        stack("down")


def say(sender, text):
    response = requests.post(f"http://127.0.0.1:{ENV['RASA_PORT']}/webhooks/rest/webhook", json={"sender": sender, "message": text}, timeout=60)
    response.raise_for_status()
    return [m.get("text") for m in response.json()]


def test_embedded_defaults_are_announced_and_used(embedded):
    started, config = embedded
    assert config["available"] == {"redis": False, "postgresql": False, "rabbitmq": False}
    for service in ("redis", "postgresql", "rabbitmq"):
        assert f"notice: {service} not reachable; using its embedded default" in started.stderr
    assert config["settings"]["BOTFLEET_DATABASE_URL"].startswith("sqlite:///")
    assert "with embedded defaults" in started.stdout


def test_the_bot_works_on_embedded_stores(embedded):
    assert say("emb-1", "How much does the laptop cost?") == ["The laptop costs 999.00 USD."]
    assert say("emb-1", "book a flight to Oslo tomorrow for 2 people")[0].startswith("Please confirm: a flight to Oslo")
    assert say("emb-1", "yes")[0].startswith("Booked! Your flight to Oslo")
    for n in range(3):
        say("emb-1", f"thanks {n}")
    _, config = embedded
    archive = requests.get(
        f"http://127.0.0.1:{ENV['ACTIONS_PORT']}/agent/conversations/emb-1/archive",
        headers={"Authorization": f"Bearer {config['agent_token']}"}, timeout=10,
    ).json()["events"]
    assert [e["text"] for e in archive if e["event"] == "user"][:2] == ["How much does the laptop cost?", "book a flight to Oslo tomorrow for 2 people"]
