"""Each channel adapter on its platform's documented payloads: the sender id Rasa's
connector computes (test_rasa_parity.py runs Rasa's own connectors on the same bytes)."""

from __future__ import annotations

import json

import pytest
from botfleet_gateway.adapters import (
    MalformedRequest,
    build_adapters,
    match_path,
    needs_conversation,
    slack_skips_routing,
)
from channel_cases import CASES, FORM, JSON, SLACK_IM, Case, js

ALL_CHANNELS = {"rest", "callback", "slack", "telegram", "botframework", "facebook", "twilio", "mattermost", "rocketchat", "webexteams", "hangouts"}


def test_every_channel_rasa_serves_has_an_adapter_and_a_case():
    assert set(build_adapters()) == ALL_CHANNELS
    assert {case.channel for case in CASES} == ALL_CHANNELS


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_conversation_id_matches_rasa(case: Case):
    adapters = build_adapters(case.options.get("conversation_granularity", "sender"))
    assert adapters[case.channel].conversation_id(case.body, case.content_type) == case.expected


def test_telegram_update_sent_as_a_json_string():
    """TelegramInput accepts a JSON document that is itself a JSON string."""
    update = {"update_id": 1, "message": {"chat": {"id": 42}, "text": "hi", "message_id": 1, "date": 1}}
    body = json.dumps(json.dumps(update)).encode()
    assert build_adapters()["telegram"].conversation_id(body, JSON) == "42"


def test_slack_content_type_is_compared_exactly_as_the_connector_does():
    # SlackInput only processes "application/json" exactly; with a charset it answers
    # "Bot message delivered." without a turn, so there is no conversation to stick to.
    assert build_adapters()["slack"].conversation_id(js(SLACK_IM), "application/json; charset=utf-8") is None


def test_slack_retries_rasa_drops_skip_routing():
    assert slack_skips_routing({"x-slack-retry-num": "1", "x-slack-retry-reason": "http_timeout"})
    # Other retries are processed by the connector as a new turn: routed normally.
    assert not slack_skips_routing({"x-slack-retry-num": "2", "x-slack-retry-reason": "http_error"})
    assert not slack_skips_routing({})


def test_twilio_needs_a_form_body():
    assert build_adapters()["twilio"].conversation_id(b"From=%2B15558675310&Body=hi", "application/x-www-form-urlencoded; charset=UTF-8") == "+15558675310"
    assert build_adapters()["twilio"].conversation_id(js({"From": "+1555"}), JSON) is None


@pytest.mark.parametrize(
    ("channel", "body", "content_type"),
    [
        ("rest", b"", JSON),
        ("rest", b"   ", JSON),
        ("rest", b"\xff\xfe{}", JSON),
        ("rest", b"[1, 2, 3]", JSON),
        ("rest", b'"sender"', JSON),
        ("rest", b"{" * 100_000, JSON),
        ("rest", b"[" * 100_000 + b"]" * 100_000, JSON),
        ("rest", b'{"sender": ' + b"9" * 10_000 + b"}", JSON),
        ("rest", b"sender=x&message=y", FORM),
        ("callback", b"{not json", JSON),
        ("slack", b"payload=%7Bbroken", FORM),
        ("slack", b"foo=bar", FORM),
        ("slack", b"\xff", FORM),
        ("telegram", b"[]", JSON),
        ("telegram", js({"message": {"text": "hi", "chat": {}}}), JSON),
        ("telegram", js({"message": {"text": "hi", "chat": {"id": {"nested": 1}}}}), JSON),
        ("facebook", js({"object": "page"}), JSON),
        ("facebook", js({"entry": "nope"}), JSON),
        ("botframework", js({"type": "message"}), JSON),
        ("mattermost", js([1]), JSON),
        ("mattermost", js({"trigger_word": "x"}), JSON),
        ("rocketchat", js(["x"]), JSON),
        ("webexteams", b"\x00\x01", JSON),
        ("hangouts", js({"type": "MESSAGE", "message": {}}), JSON),
        ("twilio", b"From=\xff", FORM),
    ],
)
def test_malformed_bodies_are_rejected_not_crashed_on(channel, body, content_type):
    with pytest.raises(MalformedRequest):
        build_adapters()[channel].conversation_id(body, content_type)


@pytest.mark.parametrize(
    ("channel", "body"),
    [
        ("rest", b'{"sender": 1e999999, "message": "x"}'),  # inf, as Python's json reads it
        ("rest", js({"sender": None})),
        ("slack", js({"event": "not an object"})),
        ("facebook", js({"entry": [{"messaging": [None, 3, {"message": {}}]}]})),
        ("webexteams", js({"data": None})),
        ("mattermost", b"{}"),
        ("rocketchat", b"{}"),
    ],
)
def test_odd_but_parseable_bodies_never_raise_anything_else(channel, body):
    result = build_adapters()[channel].conversation_id(body, JSON)
    assert result is None or isinstance(result, str)


def test_paths_and_methods_follow_the_rasa_blueprints():
    adapters = build_adapters()
    assert match_path(adapters, "/webhooks/nope/webhook") is None
    assert match_path(adapters, "/webhooks/rest/other") is None
    assert match_path(adapters, "/model/parse") is None
    assert match_path(adapters, "/webhooks/rest/webhook").methods == {"POST"}
    assert match_path(adapters, "/webhooks/facebook/webhook").methods == {"GET", "POST"}
    assert match_path(adapters, "/webhooks/slack/webhook").methods == {"GET", "POST"}
    assert match_path(adapters, "/webhooks/telegram/set_webhook").methods == {"GET", "POST"}
    for name in ALL_CHANNELS:
        health = match_path(adapters, f"/webhooks/{name}/")
        assert health is not None and health.methods == {"GET"}
        assert not needs_conversation(health, "GET")
        assert match_path(adapters, f"/webhooks/{name}") is not None
    webhook = match_path(adapters, "/webhooks/facebook/webhook")
    assert needs_conversation(webhook, "POST") and not needs_conversation(webhook, "GET")
    assert not needs_conversation(match_path(adapters, "/webhooks/telegram/set_webhook"), "POST")
