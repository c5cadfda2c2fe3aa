"""The routing file source, the assignment store on real Redis, settings, packets."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from botfleet_gateway.routing import Assignment
from botfleet_gateway.routing_source import RoutingSource
from botfleet_gateway.settings import Settings
from botfleet_gateway.socketio_proxy import event_of, handshake_sid, session_id_of, split_socketio_packet
from botfleet_gateway.stickiness import AssignmentStore, RateLimitedWarning, decode_assignment, resolve
from conftest import REDIS_URL, RoutingFile
from redis.asyncio import Redis

DOC = {"bot": "demo", "tracks": {"stable": {"url": "http://s:5005"}, "canary": {"url": "http://c:5005"}}, "canary": {"state": "Progressing", "weight": 30, "rolloutId": "r1"}}


class Counter:
    def __init__(self) -> None:
        self.errors = 0
        self.changes: list[object] = []


def source_for(path: str | None) -> tuple[RoutingSource, Counter]:
    seen = Counter()

    def on_error() -> None:
        seen.errors += 1

    return RoutingSource(path, "http://fallback:5005", "demo", on_change=seen.changes.append, on_error=on_error), seen


def test_without_a_file_the_routing_is_stable_only():
    source, seen = source_for(None)
    assert source.loaded and source.current.stable.url == "http://fallback:5005"
    assert not source.current.canary_active
    assert not source.reload()
    assert len(seen.changes) == 1


def test_missing_then_appearing_file(tmp_path):
    routing = RoutingFile(tmp_path)
    source, seen = source_for(str(routing.path))
    assert not source.reload() and not source.loaded
    assert not source.reload()
    assert seen.errors == 1  # the same missing file counts once
    routing.write(DOC)
    assert source.reload() and source.current.canary.weight == 30
    assert not source.reload()  # unchanged content: nothing happens


def test_kubelet_style_swaps_are_picked_up_and_bad_versions_keep_the_last_good(tmp_path, caplog):
    routing = RoutingFile(tmp_path)
    routing.write(DOC)
    source, seen = source_for(str(routing.path))
    assert source.reload()
    routing.write({**DOC, "canary": {**DOC["canary"], "weight": 60}})
    assert source.reload() and source.current.canary.weight == 60
    with caplog.at_level(logging.WARNING, logger="botfleet_gateway.routing"):
        routing.write_text("\xff not json")
        assert not source.reload()
        routing.write({**DOC, "canary": {"state": "Progressing", "weight": 500}})
        assert not source.reload()
    assert source.current.canary.weight == 60
    assert seen.errors == 2
    assert any("invalid" in r.getMessage() for r in caplog.records)
    assert any("not JSON" in r.getMessage() for r in caplog.records)
    assert len(seen.changes) == 2


def test_settings_from_env():
    settings = Settings.from_env({})
    assert settings.routing_file is None and settings.stable_url == "http://127.0.0.1:5005"
    assert settings.key_prefix == "botfleet:" and settings.session_ttl_seconds == 3600
    assert settings.max_body_bytes == 1024 * 1024 and settings.upstream_timeout_seconds == 30
    assert Settings.from_env({"BOTFLEET_REDIS_KEY_PREFIX": "demo"}).key_prefix == "demo:"
    assert Settings.from_env({"BOTFLEET_KEY_PREFIX": "x/", "BOTFLEET_REDIS_KEY_PREFIX": "demo"}).key_prefix == "x/"
    assert Settings.from_env({"BOTFLEET_STABLE_URL": "http://r:5005/"}).stable_url == "http://r:5005"
    assert Settings.from_env({"BOTFLEET_SOCKETIO_PATH": "chat/socket.io/"}).socketio_path == "/chat/socket.io"
    for bad in ({"BOTFLEET_MAX_BODY_BYTES": "lots"}, {"BOTFLEET_SESSION_TTL_SECONDS": "-1"}, {"BOTFLEET_SLACK_CONVERSATION_GRANULARITY": "team"}):
        with pytest.raises(ValueError):
            Settings.from_env(bad)


def test_rate_limited_warning_holds_back_repeats(caplog):
    now = [0.0]
    warning = RateLimitedWarning(logging.getLogger("test.ratelimit"), interval_seconds=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.ratelimit"):
        assert warning.warn("redis down")
        assert not warning.warn("redis down")
        now[0] = 11
        assert warning.warn("redis down")
    assert len(caplog.records) == 2
    assert caplog.records[1].suppressed_since_last == 1


def test_decode_assignment_tolerates_garbage():
    assert decode_assignment(None) is None
    assert decode_assignment(b"not json") is None
    assert decode_assignment(b'{"track": "sideways"}') is None
    assert decode_assignment(b"[1]") is None
    assert decode_assignment(b'{"track": "canary", "rolloutId": "v2"}') == Assignment("canary", "v2")


def test_store_claims_with_nx_and_refreshes_the_ttl(key_prefix):
    from botfleet_gateway.routing import parse_routing

    async def scenario() -> None:
        redis = Redis.from_url(REDIS_URL)
        store = AssignmentStore(redis, key_prefix, 100)
        key = store.key("rest", "u1")
        assert key == f"{key_prefix}gateway:track:rest:u1"
        assert await store.claim("rest", "u1", Assignment("canary", "v2")) == Assignment("canary", "v2")
        # A second claim (another replica) gets the winner back, unchanged.
        assert await store.claim("rest", "u1", Assignment("stable", "v2")) == Assignment("canary", "v2")
        await redis.expire(key, 5)
        assert (await store.get("rest", "u1"))[0] == Assignment("canary", "v2")
        assert await redis.ttl(key) > 90  # GETEX slid it back to a full session
        # An unusable stored value is replaced by the next decision.
        await redis.set(store.key("rest", "u2"), b"garbage")
        decision = await resolve(store, parse_routing(DOC), "rest", "u2")
        assert json.loads(await redis.get(store.key("rest", "u2")))["track"] == decision.track
        await redis.aclose()

    asyncio.run(scenario())


def test_engineio_and_socketio_packets():
    assert handshake_sid(b'0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000}') == "abc"
    assert handshake_sid(b"40") is None and handshake_sid(b"\xff") is None and handshake_sid(b"0{bad") is None
    import gzip

    assert handshake_sid(gzip.compress(b'0{"sid":"z"}'), "gzip") == "z"
    assert split_socketio_packet("40") == ("0", "/", "")
    assert split_socketio_packet('42/chat,["ev",{}]') == ("2", "/chat", '["ev",{}]')
    assert split_socketio_packet("2") is None
    assert event_of('["session_request",{"session_id":"s"}]') == ("session_request", {"session_id": "s"})
    assert event_of('12["session_request"]') == ("session_request", None)
    assert event_of("{}") is None and event_of("[1]") is None
    assert session_id_of({"session_id": "s"}) == "s"
    assert session_id_of({"session_id": None}) is None and session_id_of("s") is None
