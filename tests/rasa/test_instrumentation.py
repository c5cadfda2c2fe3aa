"""Rasa's side of custom-action calls, counted per outcome, against a real HTTP action endpoint."""

import asyncio
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rasa.core.actions.action import ActionExecutionRejection, RemoteAction
from rasa.core.channels import CollectingOutputChannel
from rasa.core.nlg import TemplatedNaturalLanguageGenerator
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.utils.endpoints import EndpointConfig

import botfleet_rasa  # noqa: F401  (importing it installs the counters)
from botfleet_rasa import metrics


class ActionEndpoint(BaseHTTPRequestHandler):
    """Answers like rasa-sdk: 200 with events, 400 for a rejection, 500 for a crash."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status, answer = {
            "action_ok": (200, {"events": [], "responses": []}),
            "action_reject": (400, {"action_name": "action_reject", "error": "slot invalid"}),
            "action_crash": (500, {"error": "boom"}),
        }[body["next_action"]]
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ActionEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield EndpointConfig(f"http://127.0.0.1:{server.server_port}/webhook")
    server.shutdown()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(action_name, endpoint, domain):
    tracker = DialogueStateTracker("counted", domain.slots)
    action = RemoteAction(action_name, endpoint)
    return asyncio.run(action.run(CollectingOutputChannel(), TemplatedNaturalLanguageGenerator(domain.responses), tracker, domain))


def count(outcome):
    return metrics.ACTION_SERVER_CALLS.labels(outcome)._value.get()


def test_calls_are_counted_by_outcome(endpoint, domain):
    before = {o: count(o) for o in ("ok", "rejected", "error")}
    errors = metrics.ACTION_SERVER_ERRORS._value.get()
    assert run("action_ok", endpoint, domain) == []
    with pytest.raises(ActionExecutionRejection):
        run("action_reject", endpoint, domain)
    with pytest.raises(Exception, match="action_crash"):
        run("action_crash", endpoint, domain)
    assert {o: count(o) - before[o] for o in before} == {"ok": 1, "rejected": 1, "error": 1}
    # A rejection is dialogue (a form re-asking), not an action error.
    assert metrics.ACTION_SERVER_ERRORS._value.get() == errors + 1


def test_an_unreachable_action_server_is_an_error(domain):
    errors = metrics.ACTION_SERVER_ERRORS._value.get()
    with pytest.raises(Exception, match="Couldn't connect"):
        run("action_ok", EndpointConfig(f"http://127.0.0.1:{closed_port()}/webhook"), domain)
    assert metrics.ACTION_SERVER_ERRORS._value.get() == errors + 1


def test_the_wrapper_is_installed_once():
    from botfleet_rasa import instrumentation

    wrapped = RemoteAction.run
    instrumentation.apply()
    assert RemoteAction.run is wrapped and wrapped._botfleet_instrumented
