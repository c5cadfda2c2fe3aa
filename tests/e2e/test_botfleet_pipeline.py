"""The demo bot on botfleet's production pipeline: intents from the BentoML model
server, and the in-process fallback when that server is stopped mid-conversation.

Starts its own stack (`BOTFLEET_PIPELINE=botfleet`), with the real model server,
Redis, PostgreSQL and RabbitMQ, on ports of its own."""

import os
import re
import subprocess
import sys

import pytest
import requests
from conftest import ROOT, reset_services

RUN = ROOT / ".run/e2e-botfleet"
DATABASE = "botfleet_e2e_pipeline"
ENV = {
    "BOTFLEET_STACK_DIR": str(RUN),
    "BOTFLEET_PIPELINE": "botfleet",
    "RASA_PORT": "17005",
    "ACTIONS_PORT": "17055",
    "GATEWAY_PORT": "17080",
    "NLU_PORT": "13000",
    "BOTFLEET_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{DATABASE}",
    "BOTFLEET_REDIS_KEY_PREFIX": "botfleete2epipeline",
    "BOTFLEET_EVENTS_QUEUE": "botfleet_e2e_pipeline_events",
    "BOTFLEET_EMBEDDED": "",
}
RASA = f"http://127.0.0.1:{ENV['RASA_PORT']}"


def stack(*args):
    return subprocess.run([sys.executable, str(ROOT / "ci/stack.py"), *args], env={**os.environ, **ENV}, capture_output=True, text=True, check=True)


@pytest.fixture(scope="module")
def pipeline_stack():
    reset_services(ENV, RUN)
    started = stack("up")
    try:
        yield started
    finally:
        stack("down")


def texts(sender, message):
    response = requests.post(f"{RASA}/webhooks/rest/webhook", json={"sender": sender, "message": message}, timeout=60)
    response.raise_for_status()
    return [m.get("text", "") for m in response.json()]


def metric(name, **labels):
    """Sum of a metric's samples whose labels include `labels` (workers add a pid)."""
    text = requests.get(f"{RASA}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:{{(.*)}})? (\S+)$", line)
        if match and all(f'{k}="{v}"' in (match[1] or "") for k, v in labels.items()):
            total += float(match[2])
    return total


def test_intents_come_from_the_model_server(pipeline_stack):
    assert "NLU pipeline     botfleet" in pipeline_stack.stdout
    assert texts("bf-1", "How much does the laptop cost?") == ["The laptop costs 999.00 USD."]
    assert texts("bf-1", "I want to fly to Lisbon") == ["What date would you like to travel?"]
    assert texts("bf-1", "tomorrow") == ["How many passengers?"]
    assert texts("bf-1", "2")[0].startswith("Please confirm: a flight to Lisbon")
    assert texts("bf-1", "yes")[0].startswith("Booked! Your flight to Lisbon")
    assert metric("botfleet_model_serving_requests_total", outcome="ok") >= 5
    assert metric("botfleet_nlu_degraded_total") == 0
    model = requests.get(f"http://127.0.0.1:{ENV['NLU_PORT']}/model", timeout=10).json()
    assert "botfleet-nlu" in str(model)


def test_the_bot_keeps_answering_when_the_model_server_stops(pipeline_stack):
    assert texts("bf-2", "I want to fly to Oslo") == ["What date would you like to travel?"]
    stack("stop", "model-serving")
    # Mid-form, with the model server gone: the in-process classifier takes over.
    assert texts("bf-2", "tomorrow") == ["How many passengers?"]
    assert texts("bf-2", "3")[0].startswith("Please confirm: a flight to Oslo")
    assert texts("bf-2", "yes")[0].startswith("Booked! Your flight to Oslo")
    for n in range(4):
        assert texts(f"bf-3-{n}", "How much does the laptop cost?") == ["The laptop costs 999.00 USD."]
    assert metric("botfleet_nlu_degraded_total") >= 7
    assert metric("botfleet_model_serving_requests_total", outcome="connection_error") >= 5
    assert metric("botfleet_model_serving_requests_total", outcome="circuit_open") >= 1
    assert metric("botfleet_model_serving_circuit_state") == 2  # open
    assert "model-serving circuit closed -> open" in (RUN / "rasa.log").read_text()
