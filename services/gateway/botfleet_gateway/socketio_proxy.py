"""socket.io: an Engine.IO proxy (HTTP long-polling and WebSocket).

An Engine.IO session lives in one Rasa process, so its requests must all reach one track:

- A polling handshake (no `sid`) is a new conversation: a track is chosen, the request
  forwarded, and the `sid` in Rasa's answer recorded (`<prefix>gateway:track:socketio-eio:<sid>`).
  Later polls and the WebSocket upgrade carrying that sid follow the record.
- A WebSocket opened without a sid (socket.io clients with `transports: ["websocket"]`,
  as Rasa's webchat) is held before Rasa is chosen: the gateway answers the Engine.IO
  open and the socket.io CONNECT itself, waits for the `session_request` event, and keys
  the conversation on its `session_id` (Rasa's sender id with session_persistence) under
  `socketio:<session_id>`, as the HTTP channels are. Then it opens the upstream WebSocket,
  replays what it held (swallowing Rasa's own open and CONNECT answers) and pipes frames
  both ways. Without a session_id, the one Rasa confirms is recorded.

Only Engine.IO protocol 4 is parsed (what Rasa 3.6's python-engineio 4 speaks).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import secrets
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from botfleet_gateway.gateway import STABLE, Gateway
from botfleet_gateway.proxy import HOP_BY_HOP
from botfleet_gateway.routing import Decision, Routing, Track, route
from botfleet_gateway.stickiness import REDIS_FAILURES

logger = logging.getLogger("botfleet_gateway.socketio")

CHANNEL = "socketio"
EIO_SESSIONS = "socketio-eio"
# python-engineio 4's defaults, which Rasa does not change.
OPEN_PACKET_OPTIONS = {"upgrades": [], "pingInterval": 25000, "pingTimeout": 20000, "maxPayload": 1000000}
_WS_REQUEST_HEADERS_DROPPED = HOP_BY_HOP | {
    "host", "content-length", "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
    "sec-websocket-protocol", "sec-websocket-accept",
}  # fmt: skip


# --- Engine.IO / socket.io packets (pure) -------------------------------------------------------


def handshake_sid(body: bytes, content_encoding: str | None = None) -> str | None:
    """The sid in an Engine.IO 4 polling handshake answer (`0{"sid": ...}`)."""
    try:
        if content_encoding == "gzip":
            body = gzip.decompress(body)
        elif content_encoding == "deflate":
            body = zlib.decompress(body)
        first = body.decode("utf-8").split("\x1e", 1)[0]
    except (OSError, zlib.error, UnicodeDecodeError, EOFError):
        return None
    if not first.startswith("0"):
        return None
    try:
        sid = json.loads(first[1:]).get("sid")
    except (ValueError, AttributeError):
        return None
    return sid if isinstance(sid, str) and sid else None


def split_socketio_packet(message: str) -> tuple[str, str, str] | None:
    """An Engine.IO "message" packet (`4...`) as (socket.io type, namespace, rest),
    e.g. `42/chat,["ev",{}]` → ("2", "/chat", '["ev",{}]'); None for other packets."""
    if len(message) < 2 or message[0] != "4":
        return None
    kind, rest = message[1], message[2:]
    namespace = "/"
    if rest.startswith("/"):
        namespace, _, rest = rest.partition(",")
    return kind, namespace, rest


def event_of(rest: str) -> tuple[str, Any] | None:
    """(name, first argument) of a socket.io EVENT's data (`12["name", arg]`, ack id first)."""
    payload = rest.lstrip("0123456789")
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, list) or not data or not isinstance(data[0], str):
        return None
    return data[0], (data[1] if len(data) > 1 else None)


def session_id_of(argument: Any) -> str | None:
    """Rasa's session_request handler: `data["session_id"]`, when given and not null."""
    if isinstance(argument, dict):
        value = argument.get("session_id")
        if isinstance(value, str) and value:
            return value
    return None


def connect_ack(namespace: str) -> str:
    prefix = "40" if namespace == "/" else f"40{namespace},"
    return prefix + json.dumps({"sid": secrets.token_urlsafe(15)})


def is_socketio_path(path: str, socketio_path: str) -> bool:
    return path == socketio_path or path.startswith(socketio_path + "/")


# --- HTTP long-polling --------------------------------------------------------------------------


async def handle_polling(gateway: Gateway, request: Request) -> Response:
    started = time.perf_counter()
    loaded = await gateway.routing_and_body(CHANNEL, request)
    if isinstance(loaded, Response):
        return loaded
    routing, body = loaded
    sid = request.query_params.get("sid")
    if sid or request.method != "GET":
        # Without a sid only a GET opens a session (CORS preflights carry none): stable.
        decision = await session_decision(gateway, sid, routing) if sid else STABLE
        return await gateway.forward_to(
            CHANNEL, decision.track, routing, request, body, started, gateway.settings.socketio_poll_timeout_seconds
        )
    # A handshake: a new Engine.IO session, i.e. a new conversation.
    decision = await new_session_decision(gateway, routing)
    response = await gateway.forward_to(CHANNEL, decision.track, routing, request, body, started)
    if response.status_code == 200:
        new_sid = handshake_sid(bytes(response.body), response.headers.get("content-encoding"))
        if new_sid is not None:
            await record_session(gateway, new_sid, decision)
    return response


async def session_decision(gateway: Gateway, sid: str, routing: Routing) -> Decision:
    """The track of a known Engine.IO session. An unknown one (expired, or recorded while
    Redis was down) goes to stable, whose Rasa answers it as an invalid session: the
    client then reconnects with a fresh handshake."""
    try:
        assignment, _ = await gateway.store.get(EIO_SESSIONS, sid)
        if assignment is None:
            return STABLE
        decision = route(assignment, routing, sid)
        if decision.record != assignment:
            await gateway.store.save(EIO_SESSIONS, sid, decision.record)
    except REDIS_FAILURES as error:
        gateway.redis_failed(error)
        return STABLE
    gateway.observe_decision(CHANNEL, sid, decision)
    return decision


async def new_session_decision(gateway: Gateway, routing: Routing) -> Decision:
    """A track for a session that has no key yet: a random one, split by weight. A canary
    choice needs Redis to remember it; when Redis does not answer, stable."""
    decision = route(None, routing, uuid.uuid4().hex)
    if decision.track == "canary":
        try:
            await gateway.store.ping()
        except REDIS_FAILURES as error:
            gateway.redis_failed(error)
            return STABLE
    return decision


async def record_session(gateway: Gateway, sid: str, decision: Decision) -> None:
    try:
        await gateway.store.claim(EIO_SESSIONS, sid, decision.record)
    except REDIS_FAILURES as error:
        gateway.redis_failed(error)
        return
    gateway.metrics.assignments.labels(channel=CHANNEL, track=decision.track).inc()


# --- WebSocket -----------------------------------------------------------------------------------


def upstream_ws_url(base_url: str, websocket: WebSocket) -> str:
    scheme, _, rest = base_url.partition("://")
    raw_path: bytes = websocket.scope.get("raw_path") or websocket.url.path.encode()
    url = ("wss" if scheme == "https" else "ws") + "://" + rest + raw_path.decode("latin-1")
    query: bytes = websocket.scope.get("query_string", b"")
    return url + ("?" + query.decode("latin-1") if query else "")


def upstream_ws_headers(websocket: WebSocket) -> list[tuple[str, str]]:
    headers = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in websocket.headers.raw
        if name.decode("latin-1").lower() not in _WS_REQUEST_HEADERS_DROPPED | {"user-agent"}
    ]
    if websocket.client:
        headers.append(("X-Forwarded-For", websocket.client.host))
    if "host" in websocket.headers:
        headers.append(("X-Forwarded-Host", websocket.headers["host"]))
    return headers


async def open_upstream(gateway: Gateway, routing: Routing, track: Track, websocket: WebSocket) -> ClientConnection | None:
    try:
        return await connect(
            upstream_ws_url(routing.url_for(track), websocket),
            additional_headers=upstream_ws_headers(websocket),
            user_agent_header=websocket.headers.get("user-agent"),
            subprotocols=[Subprotocol(p) for p in websocket.scope.get("subprotocols", [])] or None,
            open_timeout=gateway.settings.upstream_connect_timeout_seconds,
            max_size=gateway.settings.max_body_bytes,
            # Engine.IO has its own pings; websockets' would only add traffic.
            ping_interval=None,
            compression=None,
        )
    except InvalidStatus as error:
        code = error.response.status_code
        gateway.metrics.requests.labels(channel=CHANNEL, track=track, code=str(code)).inc()
        logger.debug("rasa refused the websocket", extra={"track": track, "status": code})
        return None
    except (OSError, TimeoutError, InvalidHandshake) as error:
        gateway.metrics.dependency_errors.labels(dependency=f"rasa_{track}").inc()
        gateway.metrics.requests.labels(channel=CHANNEL, track=track, code="502").inc()
        logger.warning("rasa unreachable", extra={"channel": CHANNEL, "track": track, "error_type": type(error).__name__})
        return None


async def handle_websocket(gateway: Gateway, websocket: WebSocket) -> None:
    routing = gateway.routing
    if routing is None:
        await websocket.close(code=1013)
        return
    sid = websocket.query_params.get("sid")
    if sid:
        # The upgrade of a polling session: its Rasa has it.
        await proxy_websocket(gateway, websocket, routing, await session_decision(gateway, sid, routing))
        return
    if websocket.query_params.get("EIO") == "4":
        await held_websocket(gateway, websocket, routing)
        return
    # Another protocol version: nothing to key on; a random split.
    await proxy_websocket(gateway, websocket, routing, await new_session_decision(gateway, routing))


async def proxy_websocket(gateway: Gateway, websocket: WebSocket, routing: Routing, decision: Decision) -> None:
    """Opens the track's upstream socket, then pipes both ways until either side closes."""
    upstream = await open_upstream(gateway, routing, decision.track, websocket)
    if upstream is None:
        await websocket.close(code=1011)
        return
    await websocket.accept(subprotocol=upstream.subprotocol)
    gateway.metrics.requests.labels(channel=CHANNEL, track=decision.track, code="101").inc()
    await pipe(websocket, upstream)


async def held_websocket(gateway: Gateway, websocket: WebSocket, routing: Routing) -> None:
    """A new EIO 4 WebSocket: hold it until the session_request, then choose and connect."""
    await websocket.accept()
    await websocket.send_text("0" + json.dumps({"sid": secrets.token_urlsafe(15), **OPEN_PACKET_OPTIONS}))
    held: list[str | bytes] = []
    connect_packet: str | None = None
    session_id: str | None = None
    deadline = time.monotonic() + gateway.settings.socketio_session_wait_seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            message = await asyncio.wait_for(websocket.receive(), remaining)
        except TimeoutError:
            break
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            if message.get("bytes") is not None:
                held.append(message["bytes"])
            break
        packet = split_socketio_packet(text)
        if packet is None:
            if text.startswith("3"):  # a pong to a ping nobody sent yet
                continue
            held.append(text)
            break
        kind, namespace, rest = packet
        if kind == "0" and connect_packet is None:
            # The gateway acknowledges the CONNECT itself: the client sends its events
            # only once connected. Rasa's own answer is swallowed later.
            connect_packet = text
            await websocket.send_text(connect_ack(namespace))
            continue
        held.append(text)
        event = event_of(rest) if kind == "2" else None
        if event is not None and event[0] == "session_request":
            session_id = session_id_of(event[1])
        break

    if session_id is not None:
        decision = await gateway.decide(CHANNEL, session_id, routing)
    else:
        decision = await new_session_decision(gateway, routing)
    upstream = await open_upstream(gateway, routing, decision.track, websocket)
    if upstream is None:
        await websocket.close(code=1011)
        return
    gateway.metrics.requests.labels(channel=CHANNEL, track=decision.track, code="101").inc()
    try:
        await replay(upstream, websocket, connect_packet, held)
    except (ConnectionClosed, TimeoutError, WebSocketDisconnect):
        await upstream.close()
        with contextlib.suppress(RuntimeError):
            await websocket.close(code=1011)
        return
    on_confirm = None if session_id is not None else _recorder(gateway, decision)
    await pipe(websocket, upstream, on_upstream_text=on_confirm)


async def replay(upstream: ClientConnection, websocket: WebSocket, connect_packet: str | None, held: list[str | bytes]) -> None:
    """Rasa's open packet and its CONNECT answer were already given to the client by the
    gateway; a refusal (`44...`) is passed on."""
    opening = await asyncio.wait_for(upstream.recv(), 10)
    if not (isinstance(opening, str) and opening.startswith("0")):
        await _send_to_client(websocket, opening)
    if connect_packet is not None:
        await upstream.send(connect_packet)
        while True:
            answer = await asyncio.wait_for(upstream.recv(), 10)
            if isinstance(answer, str) and answer.startswith("40"):
                break
            await _send_to_client(websocket, answer)
            if isinstance(answer, str) and answer.startswith("44"):
                break
    for message in held:
        await upstream.send(message)


def _recorder(gateway: Gateway, decision: Decision) -> Callable[[str], Awaitable[bool]]:
    """Records the session id Rasa confirms (it made one up), so that the client's
    reconnects with it come back to this track. Returns True once done."""

    async def record(text: str) -> bool:
        packet = split_socketio_packet(text)
        if packet is None or packet[0] != "2":
            return False
        event = event_of(packet[2])
        if event is None or event[0] != "session_confirm" or not isinstance(event[1], str):
            return False
        try:
            await gateway.store.claim(CHANNEL, event[1], decision.record)
        except REDIS_FAILURES as error:
            gateway.redis_failed(error)
            return True
        gateway.metrics.assignments.labels(channel=CHANNEL, track=decision.track).inc()
        return True

    return record


def _sendable_close_code(code: int | None) -> int:
    """1005 (no status) and 1006 (dropped) describe a close but may not be sent in one."""
    if code is None or code in (1005, 1006) or not 1000 <= code <= 4999:
        return 1000
    return code


async def _send_to_client(websocket: WebSocket, message: str | bytes) -> None:
    if isinstance(message, str):
        await websocket.send_text(message)
    else:
        await websocket.send_bytes(message)


async def pipe(
    websocket: WebSocket,
    upstream: ClientConnection,
    on_upstream_text: Callable[[str], Awaitable[bool]] | None = None,
) -> None:
    """Frames both ways until either side closes; the close code is passed on."""

    async def client_to_upstream() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close(code=_sendable_close_code(message.get("code")))
                return
            if message.get("text") is not None:
                await upstream.send(message["text"])
            elif message.get("bytes") is not None:
                await upstream.send(message["bytes"])

    async def upstream_to_client() -> None:
        watcher = on_upstream_text
        with contextlib.suppress(ConnectionClosed):
            async for message in upstream:
                await _send_to_client(websocket, message)
                if watcher is not None and isinstance(message, str) and await watcher(message):
                    watcher = None
        code = upstream.close_code
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=1011 if code == 1006 else _sendable_close_code(code))

    tasks = [asyncio.create_task(client_to_upstream()), asyncio.create_task(upstream_to_client())]
    try:
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, WebSocketDisconnect, RuntimeError):
                await task
    finally:
        await upstream.close()
