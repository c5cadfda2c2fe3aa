"""Fixtures for the gateway: real Redis, real HTTP servers on free ports.

The two upstreams stand in for the stable and canary Rasa: they echo each request back
(with their track's name) and serve socket.io through python-socketio, the library Rasa's
own socket.io channel runs on, with Rasa's session_request behaviour.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import socketio
import uvicorn
from botfleet_gateway.app import create_app
from botfleet_gateway.settings import Settings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

REDIS_URL = "redis://127.0.0.1:6379/0"
CLOSED_REDIS_URL = "redis://127.0.0.1:6399/0"  # nothing listens there


class ServerThread:
    """A uvicorn server in a thread with its own event loop, on a socket bound before it
    starts (no free-port race)."""

    def __init__(self, app: Any) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        config = uvicorn.Config(
            app, log_config=None, access_log=False, ws="websockets-sansio", lifespan="on", timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.socket]))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.socket.close()


def upstream_app(track: str) -> Any:
    """An echo server for one track, with socket.io at /socket.io/ like Rasa's."""
    # Pings every 2 s rather than 25: an idle long poll is answered within 2 s.
    sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins=[], ping_interval=2, ping_timeout=5)

    @sio.on("session_request")
    async def session_request(sid: str, data: Any) -> None:
        # rasa.core.channels.socketio.SocketIOInput's session_request handler.
        data = data or {}
        if data.get("session_id") is None:
            data["session_id"] = uuid.uuid4().hex
        await sio.emit("session_confirm", data["session_id"], room=sid)

    @sio.on("user_uttered")
    async def user_uttered(sid: str, data: Any) -> None:
        await sio.emit("bot_uttered", {"text": f"{track}: {data.get('message')}", "track": track}, room=sid)

    async def echo(request: Request) -> Response:
        body = await request.body()
        status = int(request.headers.get("x-test-status", "200"))
        document = {
            "track": track,
            "method": request.method,
            "path": request.url.path,
            "raw_path": request.scope["raw_path"].decode("latin-1"),
            "query": request.scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw],
            "body_b64": base64.b64encode(body).decode(),
        }
        if request.headers.get("x-test-gzip"):
            return Response(
                gzip.compress(json.dumps(document).encode()),
                status_code=status,
                headers={"content-encoding": "gzip", "x-upstream-track": track},
                media_type="application/json",
            )
        return JSONResponse(document, status_code=status, headers={"x-upstream-track": track})

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
    echo_app = Starlette(routes=[Route("/{path:path}", echo, methods=methods)])
    return socketio.ASGIApp(sio, other_asgi_app=echo_app, socketio_path="socket.io")


@dataclass
class Upstreams:
    stable: ServerThread
    canary: ServerThread


@pytest.fixture(scope="session")
def upstreams() -> Iterator[Upstreams]:
    stable = ServerThread(upstream_app("stable")).start()
    canary = ServerThread(upstream_app("canary")).start()
    yield Upstreams(stable, canary)
    stable.stop()
    canary.stop()


@pytest.fixture
def key_prefix() -> Iterator[str]:
    prefix = f"unitgw{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)
    client.close()


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    yield client
    client.close()


def routing_document(
    upstreams: Upstreams, state: str = "Progressing", weight: int = 50, rollout_id: str = "v2", canary: bool = True
) -> dict[str, Any]:
    tracks: dict[str, Any] = {"stable": {"url": upstreams.stable.url, "model": "v1"}}
    if canary:
        tracks["canary"] = {"url": upstreams.canary.url, "model": rollout_id}
    return {"bot": "demo", "tracks": tracks, "canary": {"state": state, "weight": weight, "rolloutId": rollout_id}}


class RoutingFile:
    """A routing file updated the way kubelet updates a ConfigMap volume: a new
    timestamped directory, then an atomic swap of the `..data` symlink."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "routing.json"
        self.generation = 0

    def write(self, document: Any) -> None:
        self.write_text(json.dumps(document) if not isinstance(document, str) else document)

    def write_text(self, text: str) -> None:
        self.generation += 1
        version = self.directory / f"..{self.generation}"
        version.mkdir()
        (version / "routing.json").write_text(text)
        link = self.directory / "..data_tmp"
        link.symlink_to(version.name)
        os.replace(link, self.directory / "..data")
        if not self.path.is_symlink():
            self.path.symlink_to("..data/routing.json")


@pytest.fixture
def routing_file(tmp_path: Path) -> RoutingFile:
    directory = tmp_path / "routing"
    directory.mkdir()
    return RoutingFile(directory)


@dataclass
class RunningGateway:
    server: ServerThread
    app: Any

    @property
    def url(self) -> str:
        return self.server.url

    def metric(self, name: str, **labels: str) -> float:
        """A sample from the registry /metrics serves (0 when absent)."""
        value = self.app.state.gateway.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else float(value)


GatewayFactory = Callable[..., RunningGateway]


@pytest.fixture
def start_gateway(key_prefix: str) -> Iterator[GatewayFactory]:
    """Starts gateway apps (each a fresh instance, as a new replica or a restart is)."""
    running: list[RunningGateway] = []

    def start(**env: str) -> RunningGateway:
        settings = Settings.from_env(
            {
                "BOTFLEET_REDIS_URL": REDIS_URL,
                "BOTFLEET_KEY_PREFIX": key_prefix,
                "BOTFLEET_ROUTING_POLL_SECONDS": "0.05",
                "BOTFLEET_UPSTREAM_TIMEOUT_SECONDS": "5",
                **env,
            }
        )
        app = create_app(settings)
        gateway = RunningGateway(ServerThread(app).start(), app)
        running.append(gateway)
        return gateway

    yield start
    for gateway in running:
        gateway.server.stop()


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def wait_for_weight(gateway: RunningGateway, weight: int, state: str | None = None) -> None:
    def applied() -> bool:
        ready = httpx.get(gateway.url + "/readyz").json()
        return ready.get("canary", {}).get("weight") == weight and (state is None or ready["canary"]["state"] == state)

    wait_for(applied)


def rest_track(client: httpx.Client, gateway: RunningGateway, sender: str) -> str:
    response = client.post(gateway.url + "/webhooks/rest/webhook", json={"sender": sender, "message": "hi"})
    assert response.status_code == 200, response.text
    return str(response.json()["track"])
