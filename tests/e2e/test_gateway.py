"""`make up` serves channels through the webhook gateway: conversations are recorded
in Redis (their track survives a gateway restart), bad bodies get a 4xx, and the
gateway's metrics count what it forwarded."""

import json
import os
import subprocess
import sys

import redis
import requests
from conftest import ENV, ROOT


def track_key(sender: str) -> str:
    return f"{ENV['BOTFLEET_REDIS_KEY_PREFIX']}:gateway:track:rest:{sender}"


def test_the_gateway_forwards_to_rasa_and_records_the_conversations_track(bot, sender):
    assert bot.texts(sender, "I want to fly to Berlin") == ["What date would you like to travel?"]
    record = redis.Redis(host="127.0.0.1", port=6379).get(track_key(sender))
    assert record is not None and json.loads(record)["track"] == "stable"
    # Rasa saw the message the gateway forwarded, unchanged.
    events = [e for e in bot.tracker(sender)["events"] if e["event"] == "user"]
    assert [e["text"] for e in events] == ["I want to fly to Berlin"]


def test_the_track_survives_a_gateway_restart(bot, sender):
    bot.texts(sender, "hello")
    client = redis.Redis(host="127.0.0.1", port=6379)
    before = client.get(track_key(sender))
    subprocess.run([sys.executable, str(ROOT / "ci/stack.py"), "restart", "gateway"], env={**os.environ, **ENV}, check=True)
    assert bot.texts(sender, "I want to fly to Berlin") == ["What date would you like to travel?"]
    assert json.loads(client.get(track_key(sender))) == json.loads(before)


def test_malformed_and_oversized_bodies_get_a_4xx_never_a_5xx(bot):
    url = f"{bot.gateway}/webhooks/rest/webhook"
    headers = {"Content-Type": "application/json"}
    for body in (b"{not json", b"[1, 2]", b"\xff\xfe", b""):
        response = requests.post(url, data=body, headers=headers, timeout=30)
        assert 400 <= response.status_code < 500, (body, response.status_code, response.text)
    response = requests.post(url, data=b"x" * (2 * 1024 * 1024), headers=headers, timeout=30)
    assert response.status_code == 413
    assert requests.post(f"{bot.gateway}/webhooks/nosuchchannel/webhook", json={}, timeout=30).status_code == 404
    # The gateway is still there and answering.
    assert requests.get(f"{bot.gateway}/healthz", timeout=10).status_code == 200


def test_the_gateway_counts_requests_by_channel_and_track(bot, sender):
    bot.texts(sender, "hello")
    metrics = requests.get(f"{bot.gateway}/metrics", timeout=10).text
    forwarded = [line for line in metrics.splitlines() if line.startswith("botfleet_gateway_requests_total{")]
    assert any('channel="rest"' in line and 'track="stable"' in line and 'code="200"' in line for line in forwarded), forwarded
