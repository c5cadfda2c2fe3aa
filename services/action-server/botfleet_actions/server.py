"""The action server: rasa-sdk's executor behind an instrumented Sanic app.

Besides rasa-sdk's /webhook, /actions and /health it serves /metrics and the agent API
used to work handed-off conversations:

  GET  /agent/handoffs                         open handoffs
  POST /agent/handoffs/<sender_id>/release     {"agent": "alice"}: hand back to the bot
  GET  /agent/conversations/<sender_id>/archive events moved out of the active window

Agent routes need `Authorization: Bearer $BOTFLEET_AGENT_TOKEN`.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import logging
import os
import time
import zlib
from typing import Any, Optional

from rasa_sdk import utils
from rasa_sdk.executor import ActionExecutor
from rasa_sdk.interfaces import ActionExecutionRejection, ActionNotFoundException
from sanic import Sanic, response
from sanic.request import Request
from sanic.response import HTTPResponse

from botfleet_actions import actions, metrics
from botfleet_actions.rasa_api import RasaAPIError, append_events
from botfleet_actions.repository import Repository
from botfleet_common import archive, db, jsonlog
from botfleet_common.metrics import render_latest

logger = logging.getLogger(__name__)
ACTION_MODULES = ("botfleet_actions.actions", "botfleet_actions.forms")


def _error(status: int, message: str, **extra: Any) -> HTTPResponse:
    return response.json({"error": message, **extra}, status=status)


def _parse_action_call(request: Request) -> Optional[dict[str, Any]]:
    try:
        body = request.body
        if request.headers.get("Content-Encoding") == "deflate":
            body = zlib.decompress(body)
        call = json.loads(body)
    except (ValueError, zlib.error):
        return None
    if not isinstance(call, dict) or not isinstance(call.get("tracker"), dict):
        return None
    return call


def build_app(repo: Repository, agent_token: Optional[str] = None) -> Sanic:
    actions.use_repository(repo)
    executor = ActionExecutor()
    for module in ACTION_MODULES:
        executor.register_package(module)
    app = Sanic("botfleet_actions", configure_logging=False)

    @app.get("/health")
    async def health(_: Request) -> HTTPResponse:
        return response.json({"status": "ok"})

    @app.get("/metrics")
    async def metrics_endpoint(_: Request) -> HTTPResponse:
        body, content_type = render_latest()
        return response.raw(body, content_type=content_type)

    @app.get("/actions")
    async def list_actions(_: Request) -> HTTPResponse:
        return response.json([{"name": name} for name in executor.actions])

    @app.post("/webhook")
    async def webhook(request: Request) -> HTTPResponse:
        call = _parse_action_call(request)
        if call is None:
            return _error(400, "the body must be a JSON action call with a tracker")
        action_name = str(call.get("next_action") or "")
        if not action_name:
            return _error(400, "next_action is required")
        utils.check_version_compatibility(call.get("version"))
        started = time.perf_counter()
        try:
            result = await executor.run(call)  # type: ignore[arg-type]
        except ActionExecutionRejection as rejection:
            return _error(400, rejection.message, action_name=rejection.action_name)
        except ActionNotFoundException as missing:
            return _error(404, missing.message, action_name=missing.action_name)
        except Exception as error:
            metrics.ACTION_ERRORS.labels(action_name, type(error).__name__).inc()
            logger.exception("action %s failed", action_name, extra={"action": action_name})
            # Never echo the request: it carries the whole conversation.
            return _error(500, "the action failed", action_name=action_name)
        finally:
            metrics.ACTION_DURATION.labels(action_name).observe(time.perf_counter() - started)
        return response.json(result)

    def authorized(request: Request) -> bool:
        if not agent_token:
            return False
        header = request.headers.get("Authorization", "")
        return hmac.compare_digest(header, f"Bearer {agent_token}")

    @app.get("/agent/handoffs")
    async def open_handoffs(request: Request) -> HTTPResponse:
        if not authorized(request):
            return _error(401, "agent API token required")
        handoffs = await repo.open_handoffs()
        return response.json([h.__dict__ for h in handoffs])

    @app.post("/agent/handoffs/<sender_id>/release")
    async def release(request: Request, sender_id: str) -> HTTPResponse:
        if not authorized(request):
            return _error(401, "agent API token required")
        try:
            agent = str((request.json or {}).get("agent") or "agent")
        except Exception:
            return _error(400, "the body must be JSON like {\"agent\": \"alice\"}")
        if not await repo.release_handoff(sender_id, agent):
            return _error(404, f"no open handoff for conversation {sender_id}")
        try:
            await append_events(
                sender_id, [{"event": "slot", "name": "handoff_active", "value": False}]
            )
        except RasaAPIError as error:
            metrics.DEPENDENCY_ERRORS.labels("rasa_api").inc()
            logger.error("released in the database but not in Rasa: %s", error)
            return _error(502, "released, but the bot could not be told; retry the release")
        metrics.HANDOFF_RELEASES.inc()
        return response.json({"sender_id": sender_id, "released_by": agent})

    @app.get("/agent/conversations/<sender_id>/archive")
    async def conversation_archive(request: Request, sender_id: str) -> HTTPResponse:
        if not authorized(request):
            return _error(401, "agent API token required")
        events = await asyncio.to_thread(archive.conversation_history, repo.engine, sender_id)
        return response.json({"sender_id": sender_id, "events": events})

    return app


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="botfleet action server")
    parser.add_argument("--host", default=os.environ.get("ACTIONS_HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("ACTIONS_PORT", "5055")))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("ACTIONS_WORKERS", "1")))
    args = parser.parse_args(argv)
    jsonlog.configure("action-server")
    repo = Repository.from_url()
    try:
        db.ensure_schema(repo.engine)
    except Exception as error:  # serve anyway: actions degrade until the database is back
        metrics.DEPENDENCY_ERRORS.labels("database").inc()
        logger.warning("database unavailable at start-up: %s", error)
    app = build_app(repo, os.environ.get("BOTFLEET_AGENT_TOKEN"))
    app.run(host=args.host, port=args.port, workers=args.workers, access_log=False, motd=False)


if __name__ == "__main__":
    main()
