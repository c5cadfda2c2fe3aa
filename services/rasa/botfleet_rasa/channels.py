"""The `ops` channel: operational endpoints on the Rasa server's own port.

Rasa only lets plug-ins add routes through input channels. This one mounts /metrics and
/health/ready at the root: readiness means a model is loaded, which Rasa's /status
(behind the API token) cannot tell a kubelet.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Dict, Optional

from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from botfleet_common.jsonlog import adopt_root_handlers
from botfleet_common.metrics import render_latest


class OpsInput(InputChannel):
    @classmethod
    def name(cls) -> str:
        return "ops"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[str, Any]]) -> InputChannel:
        # Rasa's CLI installs coloredlogs on the root logger after applying
        # --logging-config-file; channels are built later, so JSON wins from here on.
        adopt_root_handlers()
        return cls()

    def url_prefix(self) -> str:
        # register() joins this onto "/webhooks/"; an absolute path replaces it.
        return "/"

    def blueprint(
        self, on_new_message: Callable[[UserMessage], Awaitable[Any]]
    ) -> Blueprint:
        ops = Blueprint("botfleet_ops", __name__)

        @ops.route("/metrics", methods=["GET"])
        async def metrics(request: Request) -> HTTPResponse:
            body, content_type = render_latest()
            return response.raw(body, content_type=content_type)

        @ops.route("/health/live", methods=["GET"])
        async def live(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @ops.route("/health/ready", methods=["GET"])
        async def ready(request: Request) -> HTTPResponse:
            agent = getattr(request.app.ctx, "agent", None)
            if agent is not None and agent.is_ready():
                return response.json({"status": "ready", "model_id": agent.model_id})
            return response.json({"status": "model not loaded"}, status=503)

        return ops
