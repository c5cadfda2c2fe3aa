"""The gateway app end to end: real uvicorn, real Redis, two real upstream servers."""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time

import httpx
import pytest
from conftest import (
    CLOSED_REDIS_URL,
    RoutingFile,
    rest_track,
    routing_document,
    wait_for,
    wait_for_weight,
)


@pytest.fixture
def client():
    with httpx.Client(timeout=10) as c:
        yield c


def senders(n: int, tag: str = "") -> list[str]:
    return [f"user-{tag}{i}" for i in range(n)]


# --- forwarding -------------------------------------------------------------------------------


def test_forwards_the_request_unchanged(upstreams, start_gateway, client, redis_client, key_prefix):
    gateway = start_gateway(BOTFLEET_STABLE_URL=upstreams.stable.url)
    body = json.dumps({"sender": "ünïcode-user", "message": "Grüße 👋", "metadata": {"n": 1}}, ensure_ascii=False).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Signature": "v0=abc123",
        "X-Hub-Signature": "sha1=def456",
        "X-Twilio-Signature": "0/KCTR6DLpKmkAf8muzZqo1nDgQ=",
        "Authorization": "Bearer secret-token",
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        "X-Custom": "kept",
    }
    response = client.post(gateway.url + "/webhooks/rest/webhook?stream=false&token=a%2Fb%20c&x=1&x=2", content=body, headers=headers)
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["track"] == "stable"
    assert base64.b64decode(echoed["body_b64"]) == body
    assert echoed["method"] == "POST"
    assert echoed["raw_path"] == "/webhooks/rest/webhook"
    assert echoed["query"] == "stream=false&token=a%2Fb%20c&x=1&x=2"
    upstream_headers = {}
    for name, value in echoed["headers"]:
        upstream_headers.setdefault(name, value)
    for name, value in headers.items():
        assert upstream_headers[name.lower()] == value, name
    # Host is the upstream's (meshes route by it); the client's goes on as X-Forwarded-Host.
    assert upstream_headers["host"] == upstreams.stable.url.removeprefix("http://")
    assert upstream_headers["x-forwarded-host"] == gateway.url.removeprefix("http://")
    assert upstream_headers["x-forwarded-proto"] == "http"
    assert upstream_headers["content-length"] == str(len(body))
    assert upstream_headers["x-forwarded-for"] == "127.0.0.1"
    # Nothing the client did not send (httpx would add its own Accept-Encoding, User-Agent).
    assert "accept-encoding" not in upstream_headers or upstream_headers["accept-encoding"] == response.request.headers.get("accept-encoding")
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-upstream-track"] == "stable"
    # Every conversation is recorded, even with no rollout running.
    stored = redis_client.get(f"{key_prefix}gateway:track:rest:ünïcode-user")
    assert json.loads(stored)["track"] == "stable"
    ttl = redis_client.ttl(f"{key_prefix}gateway:track:rest:ünïcode-user")
    assert 3500 < ttl <= 3600


def test_rasa_status_codes_and_bodies_pass_through(upstreams, start_gateway, client):
    gateway = start_gateway(BOTFLEET_STABLE_URL=upstreams.stable.url)
    for status in (400, 401, 403, 418, 500):
        response = client.post(gateway.url + "/webhooks/rest/webhook", json={"sender": "s", "message": "x"}, headers={"x-test-status": str(status)})
        assert response.status_code == status
        assert response.json()["track"] == "stable"
    assert gateway.metric("botfleet_gateway_requests_total", channel="rest", track="stable", code="418") == 1


def test_compressed_answers_pass_as_raw_bytes(upstreams, start_gateway):
    gateway = start_gateway(BOTFLEET_STABLE_URL=upstreams.stable.url)
    with httpx.Client() as raw_client:
        request = raw_client.build_request(
            "POST", gateway.url + "/webhooks/rest/webhook", json={"sender": "gz"}, headers={"x-test-gzip": "1", "accept-encoding": "gzip"}
        )
        response = raw_client.send(request, stream=True)
        raw = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    assert int(response.headers["content-length"]) == len(raw)
    assert json.loads(gzip.decompress(raw))["track"] == "stable"


def test_get_routes_without_a_conversation_go_to_stable(upstreams, start_gateway, routing_file, client):
    routing_file.write(routing_document(upstreams, weight=100))
    gateway = start_gateway(BOTFLEET_ROUTING_FILE=str(routing_file.path))
    verification = client.get(gateway.url + "/webhooks/facebook/webhook?hub.mode=subscribe&hub.verify_token=t&hub.challenge=1158201444")
    assert verification.status_code == 200
    assert verification.json()["track"] == "stable"
    assert verification.json()["query"] == "hub.mode=subscribe&hub.verify_token=t&hub.challenge=1158201444"
    assert client.get(gateway.url + "/webhooks/slack/").json()["track"] == "stable"
    challenge = client.post(
        gateway.url + "/webhooks/slack/webhook", json={"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFd", "token": "x"}
    )
    assert challenge.json()["track"] == "stable"
    retry = client.post(
        gateway.url + "/webhooks/slack/webhook",
        json={"type": "event_callback", "event": {"type": "message", "user": "U1", "text": "hi", "channel": "D1"}},
        headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"},
    )
    assert retry.json()["track"] == "stable"
    # With weight 100, a message with a conversation goes to the canary.
    assert rest_track(client, gateway, "someone") == "canary"


# --- stickiness -----------------------------------------------------------------------------


def test_conversations_stick_to_their_track(upstreams, start_gateway, routing_file, client, redis_client, key_prefix):
    routing_file.write(routing_document(upstreams, weight=50))
    gateway = start_gateway(BOTFLEET_ROUTING_FILE=str(routing_file.path))
    first = {sender: rest_track(client, gateway, sender) for sender in senders(40)}
    assert set(first.values()) == {"stable", "canary"}  # 40 coin flips: both appear
    for _ in range(2):
        assert {sender: rest_track(client, gateway, sender) for sender in senders(40)} == first
    assert gateway.metric("botfleet_gateway_assignments_total", channel="rest", track="canary") == list(first.values()).count("canary")
    stored = json.loads(redis_client.get(f"{key_prefix}gateway:track:rest:user-0"))
    assert stored == {"track": first["user-0"], "rolloutId": "v2"}


def test_ttl_slides_with_every_message(upstreams, start_gateway, client, redis_client, key_prefix):
    gateway = start_gateway(BOTFLEET_STABLE_URL=upstreams.stable.url, BOTFLEET_SESSION_TTL_SECONDS="120")
    key = f"{key_prefix}gateway:track:rest:slider"
    rest_track(client, gateway, "slider")
    assert 100 < redis_client.ttl(key) <= 120
    redis_client.expire(key, 5)
    rest_track(client, gateway, "slider")
    assert redis_client.ttl(key) > 100


def test_two_replicas_sharing_redis_agree(upstreams, start_gateway, routing_file, tmp_path, client):
    """Two gateways that momentarily disagree (one already reads weight 100, one still 0):
    the first message's replica decides, the other follows."""
    routing_file.write(routing_document(upstreams, weight=100))
    other = RoutingFile(tmp_path)
    other.write(routing_document(upstreams, weight=0))
    replica_a = start_gateway(BOTFLEET_ROUTING_FILE=str(routing_file.path))
    replica_b = start_gateway(BOTFLEET_ROUTING_FILE=str(other.path))
    for sender in senders(10, "a"):
        assert rest_track(client, replica_a, sender) == "canary"
        assert rest_track(client, replica_b, sender) == "canary"
    for sender in senders(10, "b"):
        assert rest_track(client, replica_b, sender) == "stable"
        assert rest_track(client, replica_a, sender) == "stable"
    # Concurrent first messages to both replicas: SET NX makes one of them win, and both
    # answer from the winner's track.
    results: dict[str, list[str]] = {}

    def send(gateway, sender):
        with httpx.Client(timeout=10) as c:
            results.setdefault(sender, []).append(rest_track(c, gateway, sender))

    for sender in senders(10, "race"):
        threads = [threading.Thread(target=send, args=(g, sender)) for g in (replica_a, replica_b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        settled = rest_track(client, replica_a, sender)
        assert rest_track(client, replica_b, sender) == settled
        # The loser of SET NX follows the winner before forwarding: both answers agree.
        assert results[sender] == [settled, settled]
    total_new = sum(
        g.metric("botfleet_gateway_assignments_total", channel="rest", track=t) for g in (replica_a, replica_b) for t in ("stable", "canary")
    )
    assert total_new == 30  # every conversation was counted as new exactly once


def test_assignments_survive_a_gateway_restart(upstreams, start_gateway, routing_file, client):
    routing_file.write(routing_document(upstreams, weight=50))
    first_gateway = start_gateway(BOTFLEET_ROUTING_FILE=str(routing_file.path))
    before = {sender: rest_track(client, first_gateway, sender) for sender in senders(20)}
    first_gateway.server.stop()
    # The restarted gateway reads weight 90 now: started conversations still keep their track.
    routing_file.write(routing_document(upstreams, weight=90))
    restarted = start_gateway(BOTFLEET_ROUTING_FILE=str(routing_file.path))
    assert {sender: rest_track(client, restarted, sender) for sender in senders(20)} == before
    assert restarted.metric("botfleet_gateway_assignments_total", channel="rest", track="canary") == 0


def test_changing_the_weight_moves_no_started_conversation(upstreams, start_gateway, routing_file, client):
    routing_file.write(routing_document(upstreams, weight=30))
    gateway = start_gateway(BOTFLEET_ROUTING_FILE=str(routing_file.path))
    started = {sender: rest_track(client, gateway, sender) for sender in senders(30)}
    for weight in (100, 0, 60):
        routing_file.write(routing_document(upstreams, weight=weight))
        wait_for_weight(gateway, weight)
        assert {sender: rest_track(client, gateway, sender) for sender in senders(30)} == started
    routing_file.write(routing_document(upstreams, weight=100))
    wait_for_weight(gateway, 100)
    assert {rest_track(client, gateway, s) for s in senders(10, "new")} == {"canary"}
    assert gateway.metric("botfleet_gateway_canary_weight") == 100
    assert gateway.metric("botfleet_gateway_track_moves_total", from_track="canary", to_track="stable", reason="rollback") == 0


def test_rollback_moves_canary_conversations_to_stable_at_their_next_message(upstreams, start_gateway, routing_file, client, redis_client, key_prefix):
    routing_file.write(routing_document(upstreams, weight=100))
    gateway = start_gateway(BOTFLEET_ROUTING_FILE=str(routing_file.path))
    assert {rest_track(client, gateway, s) for s in senders(5)} == {"canary"}
    routing_file.write(routing_document(upstreams, state="RolledBack", weight=0, canary=False))
    wait_for_weight(gateway, 0, state="RolledBack")
    assert gateway.metric("botfleet_gateway_routing_info", rollout_id="v2", state="RolledBack") == 1
    assert gateway.metric("botfleet_gateway_routing_info", rollout_id="v2", state="Progressing") == 0
    assert {rest_track(client, gateway, s) for s in senders(5)} == {"stable"}
    assert gateway.metric("botfleet_gateway_track_moves_total", from_track="canary", to_track="stable", reason="rollback") == 5
    assert json.loads(redis_client.get(f"{key_prefix}gateway:track:rest:user-0"))["track"] == "stable"
    # Moved once: the next messages are plain stable ones, also after a new rollout starts.
    routing_file.write(routing_document(upstreams, weight=100, rollout_id="v3"))
    wait_for_weight(gateway, 100)
    assert {rest_track(client, gateway, s) for s in senders(5)} == {"stable"}
    assert gateway.metric("botfleet_gateway_track_moves_total", from_track="canary", to_track="stable", reason="rollback") == 5


def test_a_canary_that_refuses_connections_sends_its_conversations_to_stable(upstreams, start_gateway, routing_file, client, redis_client, key_prefix):
    """A canary scaled away before this replica read the routing that says so: the
    message was never delivered, so it goes to stable, and the conversation stays there."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    document = routing_document(upstreams, weight=100)
    document["tracks"]["canary"]["url"] = f"http://127.0.0.1:{closed}"
    routing_file.write(document)
    gateway = start_gateway(BOTFLEET_ROUTING_FILE=str(routing_file.path))
    assert {rest_track(client, gateway, s) for s in senders(3, "gone")} == {"stable"}
    assert json.loads(redis_client.get(f"{key_prefix}gateway:track:rest:user-gone0"))["track"] == "stable"
    assert gateway.metric("botfleet_gateway_track_moves_total", from_track="canary", to_track="stable", reason="canary_unreachable") == 3
    # Moved for good: the next message goes to stable without trying the canary again.
    assert rest_track(client, gateway, "user-gone0") == "stable"
    assert gateway.metric("botfleet_gateway_track_moves_total", from_track="canary", to_track="stable", reason="canary_unreachable") == 3
    assert gateway.metric("botfleet_gateway_dependency_errors_total", dependency="rasa_canary") == 3


def test_promotion_and_new_rollout_moves_are_counted_by_reason(upstreams, start_gateway, routing_file, client):
    routing_file.write(routing_document(upstreams, weight=100, rollout_id="v2"))
    gateway = start_gateway(BOTFLEET_ROUTING_FILE=str(routing_file.path))
    assert rest_track(client, gateway, "promoted-user") == "canary"
    assert rest_track(client, gateway, "next-rollout-user") == "canary"
    routing_file.write(routing_document(upstreams, state="Promoted", weight=0, rollout_id="v2"))
    wait_for_weight(gateway, 0, state="Promoted")
    assert rest_track(client, gateway, "promoted-user") == "stable"
    routing_file.write(routing_document(upstreams, weight=100, rollout_id="v3"))
    wait_for_weight(gateway, 100, state="Progressing")
    assert rest_track(client, gateway, "next-rollout-user") == "stable"
    assert gateway.metric("botfleet_gateway_track_moves_total", from_track="canary", to_track="stable", reason="promoted") == 1
    assert gateway.metric("botfleet_gateway_track_moves_total", from_track="canary", to_track="stable", reason="new_rollout") == 1


# --- the routing file ------------------------------------------------------------------------


def test_routing_file_reload_keeps_the_last_good_routing(upstreams, start_gateway, routing_file, client):
    routing_file.write(routing_document(upstreams, weight=100))
    gateway = start_gateway(BOTFLEET_ROUTING_FILE=str(routing_file.path))
    assert rest_track(client, gateway, "a") == "canary"
    routing_file.write_text('{"bot": "demo", "tracks": ')  # truncated
    wait_for(lambda: gateway.metric("botfleet_gateway_routing_reload_errors_total") == 1)
    routing_file.write({"bot": "demo", "tracks": {"stable": {"url": "not-a-url"}}})
    wait_for(lambda: gateway.metric("botfleet_gateway_routing_reload_errors_total") == 2)
    assert rest_track(client, gateway, "b") == "canary"  # still the last good routing
    assert client.get(gateway.url + "/readyz").status_code == 200
    routing_file.write(routing_document(upstreams, weight=0))
    wait_for_weight(gateway, 0)
    assert rest_track(client, gateway, "c") == "stable"
    time.sleep(0.2)
    assert gateway.metric("botfleet_gateway_routing_reload_errors_total") == 2  # counted once per bad version


def test_ready_only_once_the_routing_file_is_read(upstreams, start_gateway, routing_file, client):
    gateway = start_gateway(BOTFLEET_ROUTING_FILE=str(routing_file.path))
    assert client.get(gateway.url + "/healthz").status_code == 200
    assert client.get(gateway.url + "/readyz").status_code == 503
    assert client.post(gateway.url + "/webhooks/rest/webhook", json={"sender": "x"}).status_code == 503
    routing_file.write(routing_document(upstreams, weight=0))
    wait_for(lambda: client.get(gateway.url + "/readyz").status_code == 200)
    assert rest_track(client, gateway, "x") == "stable"


def test_metrics_endpoint_serves_the_gateway_metrics(upstreams, start_gateway, routing_file, client):
    routing_file.write(routing_document(upstreams, weight=25))
    gateway = start_gateway(BOTFLEET_ROUTING_FILE=str(routing_file.path))
    rest_track(client, gateway, "m")
    text = client.get(gateway.url + "/metrics").text
    for name in (
        "botfleet_gateway_requests_total",
        "botfleet_gateway_request_duration_seconds_bucket",
        "botfleet_gateway_assignments_total",
        'botfleet_gateway_routing_info{rollout_id="v2",state="Progressing"} 1.0',
        "botfleet_gateway_canary_weight 25.0",
    ):
        assert name in text


# --- bad input ----------------------------------------------------------------------------------


def test_oversized_bodies_are_refused_with_413(upstreams, start_gateway, client):
    gateway = start_gateway(BOTFLEET_STABLE_URL=upstreams.stable.url, BOTFLEET_MAX_BODY_BYTES="1000")
    big = json.dumps({"sender": "s", "message": "x" * 2000}).encode()
    assert client.post(gateway.url + "/webhooks/rest/webhook", content=big).status_code == 413

    def chunks():  # no Content-Length: chunked transfer, refused as it passes the limit
        for _ in range(100):
            yield b"x" * 100

    response = client.post(gateway.url + "/webhooks/rest/webhook", content=chunks())
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    assert gateway.metric("botfleet_gateway_rejected_total", channel="rest", reason="body_too_large") == 2
    assert client.post(gateway.url + "/webhooks/rest/webhook", json={"sender": "s", "message": "ok"}).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        ("/webhooks/rest/webhook", b"", "application/json"),
        ("/webhooks/rest/webhook", b"\xc3\x28\xff", "application/json"),
        ("/webhooks/rest/webhook", b"[1, 2]", "application/json"),
        ("/webhooks/rest/webhook", b'{"sender": ' + b"1" * 5000 + b"}", "application/json"),
        ("/webhooks/rest/webhook", b"[" * 50_000, "application/json"),
        ("/webhooks/rest/webhook", b"sender=x", "application/x-www-form-urlencoded"),
        ("/webhooks/rest/webhook", b'{"sender": "x"', "text/plain"),
        ("/webhooks/telegram/webhook", b'{"message": {"text": "hi", "chat": []}}', "application/json"),
        ("/webhooks/slack/webhook", b"payload=%7B", "application/x-www-form-urlencoded"),
        ("/webhooks/facebook/webhook", b'{"object": "page", "entry": {}}', "application/json"),
        ("/webhooks/twilio/webhook", b"From=%FF%FE\xff", "application/x-www-form-urlencoded"),
    ],
)
def test_malformed_bodies_get_400_never_5xx(upstreams, start_gateway, client, path, body, content_type):
    gateway = start_gateway(BOTFLEET_STABLE_URL=upstreams.stable.url)
    response = client.post(gateway.url + path, content=body, headers={"content-type": content_type})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "malformed"


def test_odd_but_valid_bodies_are_forwarded(upstreams, start_gateway, client):
    gateway = start_gateway(BOTFLEET_STABLE_URL=upstreams.stable.url)
    for body in (b'{"sender": 1e400}', b'{"sender": {"nested": [1, {"x": null}]}}', b'{"sender": "\\u0000"}', b"{}"):
        response = client.post(gateway.url + "/webhooks/rest/webhook", content=body)
        assert response.status_code == 200, body
    # Twilio without a form body carries no sender: forwarded to stable.
    assert client.post(gateway.url + "/webhooks/twilio/webhook", json={"From": "+1"}).status_code == 200


def test_unknown_paths_get_404_and_wrong_methods_405(upstreams, start_gateway, client):
    gateway = start_gateway(BOTFLEET_STABLE_URL=upstreams.stable.url)
    for path in ("/webhooks/unknown/webhook", "/model/parse", "/conversations/x/tracker", "/", "/webhooks/rest/other"):
        assert client.post(gateway.url + path, json={}).status_code == 404, path
    assert client.get(gateway.url + "/webhooks/rest/webhook").status_code == 405
    assert gateway.metric("botfleet_gateway_rejected_total", channel="unknown", reason="unknown_path") == 5
    assert gateway.metric("botfleet_gateway_rejected_total", channel="rest", reason="method_not_allowed") == 1


# --- failures of what the gateway depends on ------------------------------------------------------


def test_redis_down_routes_to_stable_without_errors(upstreams, start_gateway, routing_file, client):
    routing_file.write(routing_document(upstreams, weight=100))
    gateway = start_gateway(BOTFLEET_ROUTING_FILE=str(routing_file.path), BOTFLEET_REDIS_URL=CLOSED_REDIS_URL)
    for sender in senders(5):
        assert rest_track(client, gateway, sender) == "stable"
    assert gateway.metric("botfleet_gateway_dependency_errors_total", dependency="redis") == 5
    assert client.get(gateway.url + "/readyz").status_code == 200


def test_upstream_down_answers_502(start_gateway, client, upstreams, routing_file):
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    routing_file.write(
        {"bot": "demo", "tracks": {"stable": {"url": dead}, "canary": {"url": upstreams.canary.url}}, "canary": {"state": "Progressing", "weight": 0, "rolloutId": "v2"}}
    )
    gateway = start_gateway(BOTFLEET_ROUTING_FILE=str(routing_file.path))
    response = client.post(gateway.url + "/webhooks/rest/webhook", json={"sender": "s", "message": "hi"})
    assert response.status_code == 502
    assert response.json() == {"error": "upstream_unavailable", "detail": "the stable Rasa did not answer", "track": "stable"}
    assert gateway.metric("botfleet_gateway_dependency_errors_total", dependency="rasa_stable") == 1
    assert gateway.metric("botfleet_gateway_requests_total", channel="rest", track="stable", code="502") == 1


def test_every_channel_routes_through_the_gateway(upstreams, start_gateway, routing_file, client):
    """Each channel's realistic request reaches a track and sticks there."""
    from channel_cases import CASES

    routing_file.write(routing_document(upstreams, weight=50))
    gateway = start_gateway(BOTFLEET_ROUTING_FILE=str(routing_file.path))
    for case in CASES:
        if case.options:
            continue
        url = f"{gateway.url}/webhooks/{case.channel}/webhook"
        tracks = {client.post(url, content=case.body, headers={"content-type": case.content_type}).json()["track"] for _ in range(3)}
        assert len(tracks) == 1, case.id
        if case.expected is None:
            assert tracks == {"stable"}, case.id
