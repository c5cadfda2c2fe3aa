"""socket.io through the gateway: Engine.IO long-polling by hand, and python-socketio's
real client over polling+upgrade and over a WebSocket alone. The upstreams run
python-socketio (what Rasa's socket.io channel runs on): an Engine.IO request reaching the
wrong track would be refused there as an unknown session."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import socketio
from conftest import CLOSED_REDIS_URL, routing_document, wait_for_weight

EIO_POLLING = "/socket.io/?EIO=4&transport=polling"


def handshake(client: httpx.Client, url: str) -> str:
    response = client.get(url + EIO_POLLING)
    assert response.status_code == 200, response.text
    assert response.text.startswith("0")
    return str(json.loads(response.text[1:])["sid"])


def test_polling_session_stays_on_one_track(upstreams, start_gateway, routing_file, redis_client, key_prefix):
    routing_file.write(routing_document(upstreams, weight=50))
    gateway = start_gateway(BOTFLEET_ROUTING_FILE=str(routing_file.path))
    tracks = []
    with httpx.Client(timeout=10) as client:
        for _ in range(16):
            sid = handshake(client, gateway.url)
            recorded = json.loads(redis_client.get(f"{key_prefix}gateway:track:socketio-eio:{sid}"))
            session = f"{gateway.url}{EIO_POLLING}&sid={sid}"
            # socket.io CONNECT, then an event; each request carries the sid.
            assert client.post(session, content=b"40").text == "OK"
            assert client.get(session).text.startswith("40")
            assert client.post(session, content=b'42["user_uttered",{"message":"hi"}]').text == "OK"
            reply = client.get(session).text
            assert reply.startswith("42")
            assert json.loads(reply[2:])[1]["track"] == recorded["track"]
            tracks.append(recorded["track"])
    assert set(tracks) == {"stable", "canary"}  # 16 coin flips
    assert gateway.metric("botfleet_gateway_assignments_total", channel="socketio", track="canary") == tracks.count("canary")


def test_unknown_sid_goes_to_stable(upstreams, start_gateway, routing_file):
    routing_file.write(routing_document(upstreams, weight=100))
    gateway = start_gateway(BOTFLEET_ROUTING_FILE=str(routing_file.path))
    response = httpx.get(f"{gateway.url}{EIO_POLLING}&sid=never-issued")
    # The stable Rasa's own answer to a session it does not know, passed through.
    assert response.status_code == 400
    assert gateway.metric("botfleet_gateway_requests_total", channel="socketio", track="stable", code="400") == 1


class Conversation:
    """A real socket.io client speaking Rasa's events."""

    def __init__(self, url: str, transports: list[str]) -> None:
        self.url = url
        self.transports = transports
        self.client = socketio.AsyncClient(reconnection=False)
        self.confirmed: asyncio.Queue[Any] = asyncio.Queue()
        self.uttered: asyncio.Queue[Any] = asyncio.Queue()
        self.client.on("session_confirm", self.confirmed.put_nowait)
        self.client.on("bot_uttered", self.uttered.put_nowait)

    async def __aenter__(self) -> Conversation:
        await self.client.connect(self.url, transports=self.transports, socketio_path="socket.io", wait_timeout=5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.disconnect()

    async def start(self, session_id: str | None) -> str:
        await self.client.emit("session_request", {"session_id": session_id})
        return str(await asyncio.wait_for(self.confirmed.get(), 5))

    async def say(self, text: str) -> str:
        await self.client.emit("user_uttered", {"message": text, "session_id": "x"})
        reply = await asyncio.wait_for(self.uttered.get(), 5)
        assert reply["text"].endswith(text)
        return str(reply["track"])


def test_socketio_client_polling_then_websocket_upgrade(upstreams, start_gateway, routing_file, redis_client, key_prefix):
    routing_file.write(routing_document(upstreams, weight=50))
    gateway = start_gateway(BOTFLEET_ROUTING_FILE=str(routing_file.path))

    async def scenario() -> list[tuple[str, str]]:
        seen = []
        for i in range(4):
            async with Conversation(gateway.url, ["polling", "websocket"]) as conversation:
                await conversation.start(f"upgrade-{i}")
                first = await conversation.say("hello")
                # Wait for the upgrade to the WebSocket (it carries the sid).
                for _ in range(100):
                    if conversation.client.transport() == "websocket":
                        break
                    await asyncio.sleep(0.02)
                assert conversation.client.transport() == "websocket"
                assert await conversation.say("after upgrade") == first
                sid = conversation.client.eio.sid
                seen.append((first, json.loads(redis_client.get(f"{key_prefix}gateway:track:socketio-eio:{sid}"))["track"]))
        return seen

    for served, recorded in asyncio.run(scenario()):
        assert served == recorded


def test_websocket_only_client_is_keyed_on_its_session_id(upstreams, start_gateway, routing_file, redis_client, key_prefix):
    routing_file.write(routing_document(upstreams, weight=100))
    gateway = start_gateway(BOTFLEET_ROUTING_FILE=str(routing_file.path))

    async def talk(session_id: str | None) -> tuple[str, str]:
        async with Conversation(gateway.url, ["websocket"]) as conversation:
            confirmed = await conversation.start(session_id)
            track = await conversation.say("hi")
            assert await conversation.say("again") == track
            return confirmed, track

    assert asyncio.run(talk("webchat-session-1")) == ("webchat-session-1", "canary")
    assert json.loads(redis_client.get(f"{key_prefix}gateway:track:socketio:webchat-session-1"))["track"] == "canary"
    # Weight down to 0: the reconnecting session stays on its canary, a new one goes stable.
    routing_file.write(routing_document(upstreams, weight=0))
    wait_for_weight(gateway, 0)
    assert asyncio.run(talk("webchat-session-1")) == ("webchat-session-1", "canary")
    assert asyncio.run(talk("webchat-session-2"))[1] == "stable"
    # Without a session id, the one Rasa makes up is recorded for the client's reconnects.
    routing_file.write(routing_document(upstreams, weight=100))
    wait_for_weight(gateway, 100)
    made_up, track = asyncio.run(talk(None))
    assert track == "canary"
    assert json.loads(redis_client.get(f"{key_prefix}gateway:track:socketio:{made_up}"))["track"] == "canary"
    # Rollback: the session moves to stable at its next connection, counted.
    routing_file.write(routing_document(upstreams, state="RolledBack", weight=0, canary=False))
    wait_for_weight(gateway, 0, state="RolledBack")
    assert asyncio.run(talk("webchat-session-1")) == ("webchat-session-1", "stable")
    assert gateway.metric("botfleet_gateway_track_moves_total", from_track="canary", to_track="stable", reason="rollback") == 1


def test_websocket_with_redis_down_goes_to_stable(upstreams, start_gateway, routing_file):
    routing_file.write(routing_document(upstreams, weight=100))
    gateway = start_gateway(BOTFLEET_ROUTING_FILE=str(routing_file.path), BOTFLEET_REDIS_URL=CLOSED_REDIS_URL)

    async def scenario() -> str:
        async with Conversation(gateway.url, ["websocket"]) as websocket_only:
            await websocket_only.start("no-redis")
            return await websocket_only.say("hi")

    assert asyncio.run(scenario()) == "stable"
    with httpx.Client(timeout=10) as client:
        sid = handshake(client, gateway.url)  # stable: a canary session could not be remembered
        session = f"{gateway.url}{EIO_POLLING}&sid={sid}"
        assert client.post(session, content=b"40").text == "OK"
        assert client.get(session).text.startswith("40")
        assert client.post(session, content=b'42["user_uttered",{"message":"hi"}]').text == "OK"
        assert json.loads(client.get(session).text[2:])[1]["track"] == "stable"
    assert gateway.metric("botfleet_gateway_dependency_errors_total", dependency="redis") >= 3


def test_long_polls_outlast_the_channel_timeout(upstreams, start_gateway):
    """An idle long poll is held by Rasa until its next ping; the channels' short
    upstream timeout must not cut it (polls have their own)."""
    gateway = start_gateway(BOTFLEET_STABLE_URL=upstreams.stable.url, BOTFLEET_UPSTREAM_TIMEOUT_SECONDS="0.5")
    with httpx.Client(timeout=10) as client:
        sid = handshake(client, gateway.url)
        session = f"{gateway.url}{EIO_POLLING}&sid={sid}"
        assert client.post(session, content=b"40").text == "OK"
        assert client.get(session).text.startswith("40")
        idle = client.get(session)  # answered by the upstream's ping after about 2 s
        assert idle.status_code == 200
        assert idle.text == "2"


def test_websocket_to_a_dead_upstream_is_closed_not_crashed(start_gateway, routing_file, upstreams):
    routing_file.write({"bot": "demo", "tracks": {"stable": {"url": "http://127.0.0.1:9"}}})
    gateway = start_gateway(BOTFLEET_ROUTING_FILE=str(routing_file.path))

    async def scenario() -> None:
        conversation = Conversation(gateway.url, ["websocket"])
        await conversation.client.connect(gateway.url, transports=["websocket"], socketio_path="socket.io", wait_timeout=5)
        await conversation.client.emit("session_request", {"session_id": "dead"})
        await asyncio.wait_for(conversation.client.wait(), 5)  # the gateway closes the socket

    asyncio.run(scenario())
    assert gateway.metric("botfleet_gateway_dependency_errors_total", dependency="rasa_stable") == 1
    assert httpx.get(gateway.url + "/healthz").status_code == 200


@pytest.mark.parametrize("path", ["/socket.io/?EIO=4&transport=websocket", "/other/ws"])
def test_websocket_paths(upstreams, start_gateway, path):
    """Raw Engine.IO over a WebSocket: the gateway's own open packet, then Rasa's socket.io
    answers; other WebSocket paths are refused."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    gateway = start_gateway(BOTFLEET_STABLE_URL=upstreams.stable.url)
    url = gateway.url.replace("http://", "ws://") + path
    if path.startswith("/other"):
        with pytest.raises(InvalidStatus):
            connect(url, open_timeout=5).close()
        return
    with connect(url, open_timeout=5) as ws:
        opening = ws.recv(timeout=5)
        assert opening.startswith("0") and json.loads(opening[1:])["upgrades"] == []
        ws.send("40")
        assert ws.recv(timeout=5).startswith("40")
        ws.send('42["session_request",{"session_id":"raw-1"}]')
        assert ws.recv(timeout=5) == '42["session_confirm","raw-1"]'
        ws.send('42["user_uttered",{"message":"raw"}]')
        assert json.loads(ws.recv(timeout=5)[2:])[1] == {"text": "stable: raw", "track": "stable"}
