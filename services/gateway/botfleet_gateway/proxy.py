"""Forwarding one HTTP request to a Rasa and its answer back, bytes unchanged.

Only hop-by-hop headers (RFC 9110 §7.6.1) are dropped: signature headers
(X-Slack-Signature, X-Hub-Signature, X-Twilio-Signature), Authorization and the rest pass
as they came, since connectors verify them against the exact request. Host is the one
header rewritten, to the upstream's (a service mesh routes by it); the client's goes on in
X-Forwarded-Host, and no Rasa 3.6 connector signs it. Bodies pass as raw bytes both ways,
compressed ones included.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx
from starlette.requests import Request
from starlette.responses import Response

HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
        "te", "trailer", "trailers", "transfer-encoding", "upgrade",
    }
)  # fmt: skip
# Recomputed for the bytes actually sent.
_RECOMPUTED = frozenset({"content-length"})


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


def _dropped(name: str, connection_tokens: frozenset[str]) -> bool:
    return name in HOP_BY_HOP or name in _RECOMPUTED or name in connection_tokens


def _connection_tokens(raw_headers: Iterable[tuple[bytes, bytes]]) -> frozenset[str]:
    """Headers named in Connection are hop-by-hop too."""
    tokens: set[str] = set()
    for name, value in raw_headers:
        if name.lower() == b"connection":
            tokens.update(token.strip().lower() for token in value.decode("latin-1").split(",") if token.strip())
    return frozenset(tokens)


def forwarded_request_headers(raw_headers: list[tuple[bytes, bytes]], client_host: str | None, scheme: str) -> list[tuple[bytes, bytes]]:
    tokens = _connection_tokens(raw_headers) | {"host"}
    headers = [(name, value) for name, value in raw_headers if not _dropped(name.decode("latin-1").lower(), tokens)]
    host = next((value for name, value in raw_headers if name.lower() == b"host"), None)
    if host is not None and not any(name.lower() == b"x-forwarded-host" for name, _ in headers):
        headers.append((b"x-forwarded-host", host))
    if client_host:
        # Appended, as every proxy on the way does, so that Rasa's logs can see the client.
        existing = [value for name, value in headers if name.lower() == b"x-forwarded-for"]
        headers = [(name, value) for name, value in headers if name.lower() != b"x-forwarded-for"]
        chain = b", ".join([*existing, client_host.encode("latin-1")])
        headers.append((b"x-forwarded-for", chain))
    if not any(name.lower() == b"x-forwarded-proto" for name, _ in headers):
        headers.append((b"x-forwarded-proto", scheme.encode("latin-1")))
    return headers


def response_headers(raw_headers: list[tuple[bytes, bytes]], body_length: int) -> list[tuple[bytes, bytes]]:
    tokens = _connection_tokens(raw_headers)
    headers = [(name, value) for name, value in raw_headers if not _dropped(name.decode("latin-1").lower(), tokens)]
    headers.append((b"content-length", str(body_length).encode()))
    return headers


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or BodyTooLarge as soon as it passes the limit: a declared
    Content-Length over it is refused before reading anything."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def upstream_url(base_url: str, request: Request) -> str:
    """Base URL + the path as the client sent it (raw, escapes kept) + the raw query."""
    raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
    url = base_url + raw_path.decode("latin-1")
    query: bytes = request.scope.get("query_string", b"")
    if query:
        url += "?" + query.decode("latin-1")
    return url


async def forward(
    client: httpx.AsyncClient, base_url: str, request: Request, body: bytes, read_timeout: float | None = None
) -> Response:
    """Sends the request to base_url; raises httpx.TransportError when Rasa is unreachable.
    `read_timeout` overrides the client's for this request (Engine.IO long polls)."""
    client_host = request.client.host if request.client else None
    upstream_request = client.build_request(
        request.method,
        upstream_url(base_url, request),
        headers=forwarded_request_headers(list(request.headers.raw), client_host, request.url.scheme),
        content=body,
        timeout=client.timeout if read_timeout is None else httpx.Timeout(read_timeout, connect=client.timeout.connect),
    )
    upstream = await client.send(upstream_request, stream=True)
    try:
        content = b"".join([chunk async for chunk in upstream.aiter_raw()])
    finally:
        await upstream.aclose()
    response = Response(content=content, status_code=upstream.status_code)
    response.raw_headers = response_headers(list(upstream.headers.raw), len(content))
    return response


def new_upstream_client(timeout_seconds: float, connect_timeout_seconds: float, max_connections: int) -> httpx.AsyncClient:
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_seconds, connect=connect_timeout_seconds),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        follow_redirects=False,
        trust_env=False,
    )
    # httpx adds its own Accept, Accept-Encoding and User-Agent to every request unless
    # told otherwise; the gateway adds nothing the client did not send.
    client.headers = httpx.Headers()
    return client
