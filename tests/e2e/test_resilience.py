"""Restarts, malformed input, observability and the sliding window, end to end."""

import os
import subprocess
import sys

import requests
from conftest import ENV, ROOT


def test_action_server_restart_mid_conversation_loses_nothing(bot, sender):
    assert bot.texts(sender, "I want to fly to Lisbon") == ["What date would you like to travel?"]
    subprocess.run([sys.executable, str(ROOT / "ci/stack.py"), "restart", "actions"], env={**os.environ, **ENV}, check=True)
    assert bot.texts(sender, "tomorrow") == ["How many passengers?"]
    assert bot.slot(sender, "destination") == "Lisbon"
    assert bot.texts(sender, "2")[0].startswith("Please confirm: a flight to Lisbon on ")


def test_malformed_webhooks_get_4xx(bot):
    rest = f"{bot.rasa}/webhooks/rest/webhook"
    assert 400 <= requests.post(rest, data="{not json", headers={"Content-Type": "application/json"}, timeout=10).status_code < 500
    actions = f"{bot.actions}/webhook"
    assert requests.post(actions, data="garbage", timeout=10).status_code == 400
    assert requests.post(actions, json={"next_action": "action_clarify"}, timeout=10).status_code == 400
    assert requests.post(actions, json={"next_action": "no_such_action", "tracker": {"sender_id": "x"}}, timeout=10).status_code == 404
    # The bot is still fine afterwards.
    assert requests.get(f"{bot.rasa}/health/ready", timeout=10).status_code == 200


def test_socketio_channel_is_served(bot):
    handshake = requests.get(f"{bot.rasa}/socket.io/", params={"EIO": "4", "transport": "polling"}, timeout=10)
    assert handshake.status_code == 200 and '"sid"' in handshake.text


def test_rasa_api_requires_the_token(bot, sender):
    bot.say(sender, "hi")
    assert requests.get(f"{bot.rasa}/conversations/{sender}/tracker", timeout=10).status_code == 401
    assert requests.get(f"{bot.rasa}/status", params={"token": bot.token}, timeout=10).status_code == 200


def test_metrics_are_exposed(bot, sender):
    bot.say(sender, "How much does the laptop cost?")
    bot.say(sender, "blorp zzkx quib")
    rasa = requests.get(f"{bot.rasa}/metrics", timeout=10).text
    for name in ("botfleet_messages_total{channel=\"rest\",direction=\"in\"}", "botfleet_intent_confidence_bucket", "botfleet_nlu_fallbacks_total", "botfleet_turn_duration_seconds_bucket"):
        assert name in rasa, name
    assert "botfleet_model_info{" in rasa and "botfleet_model_load_failures_total 0.0" in rasa
    loaded = [line for line in rasa.splitlines() if line.startswith(("botfleet_model_loaded{", "botfleet_model_loaded "))]
    assert loaded and all(line.endswith(" 1.0") for line in loaded), loaded
    actions = requests.get(f"{bot.actions}/metrics", timeout=10).text
    assert 'botfleet_action_duration_seconds_count{action="action_product_price"}' in actions
    assert "botfleet_action_errors_total" in actions and "botfleet_handoffs_total" in actions


def test_old_turns_move_to_the_archive(bot, sender):
    window = int(ENV["BOTFLEET_WINDOW_TURNS"])
    for n in range(window + 3):
        bot.say(sender, "hello" if n % 2 else "thanks")
    events = bot.tracker(sender)["events"]
    assert len([e for e in events if e["event"] == "user"]) == window
    archived = requests.get(f"{bot.actions}/agent/conversations/{sender}/archive", headers=bot.agent_headers, timeout=10).json()["events"]
    assert len([e for e in archived if e["event"] == "user"]) == 3
    # The conversation carries on normally after trimming.
    assert bot.texts(sender, "How much does the laptop cost?") == ["The laptop costs 999.00 USD."]
