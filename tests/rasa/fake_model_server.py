"""A real HTTP server in a thread that speaks the model-serving API
(POST /classify, GET /readyz) and can be told to misbehave."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# A toy keyword classifier: rankings are computed from the text, so a test can tell a
# remote prediction from the in-process one and from another text's prediction.
KEYWORDS = {
    "greet": {"hi", "hello", "hey"},
    "book_flight": {"fly", "flight", "book"},
    "goodbye": {"bye", "goodbye"},
    "order_status": {"order", "track"},
}


def rank(text: str) -> dict[str, Any]:
    words = set(text.lower().replace("?", " ").split())
    scores = {intent: len(words & keys) + 0.1 for intent, keys in KEYWORDS.items()}
    total = sum(scores.values())
    # Deliberately not sorted: the component must sort the ranking itself.
    ranking = [{"name": intent, "confidence": score / total} for intent, score in scores.items()]
    best = max(ranking, key=lambda r: r["confidence"])
    return {"intent": dict(best), "intent_ranking": ranking}


class FakeModelServer:
    """Modes: ok, hang (answer only after `hang_seconds`), status (answer `status`),
    malformed (invalid JSON), wrong_shape (valid JSON, not a ranking per text),
    close (drop the connection without answering). `fail_first` requests answer 503
    before the mode applies."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.status = 500
        self.hang_seconds = 5.0
        self.fail_first = 0
        self.requests = 0
        self.bodies: list[Any] = []
        self.client_ports: list[int] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as BentoML (uvicorn) does

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._send(200 if self.path == "/readyz" else 404, b"{}")

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests += 1
                    server.bodies.append(body)
                    server.client_ports.append(self.client_address[1])
                    failing = server.fail_first > 0
                    server.fail_first -= 1 if failing else 0
                if self.path != "/classify":
                    return self._send(404, b'{"error": "not found"}')
                if failing:
                    return self._send(503, b'{"error": "warming up"}')
                mode = server.mode
                if mode == "hang":
                    server._release.wait(server.hang_seconds)
                elif mode == "status":
                    return self._send(server.status, b'{"error": "boom"}')
                elif mode == "malformed":
                    return self._send(200, b'[{"intent": {"name": "greet", "confid')
                elif mode == "wrong_shape":
                    return self._send(200, json.dumps([{"intent": {"name": "greet", "confidence": "high"}}]).encode())
                elif mode == "close":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self._send(200, json.dumps([rank(t) for t in body["texts"]]).encode())

            def _send(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up on a hanging request: expected here

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()


def closed_port_url() -> str:
    """A URL on which nothing listens: connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
