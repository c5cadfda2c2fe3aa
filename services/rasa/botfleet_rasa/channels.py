"""The `ops` channel: operational endpoints on the Rasa server's own port.

Rasa only lets plug-ins add routes through input channels. This one mounts /metrics and
/health/ready at the root: readiness means a model is loaded, which Rasa's /status
(behind the API token) cannot tell a kubelet.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Dict, Optional

from rasa.core.channels.channel import InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from botfleet_common.jsonlog import adopt_root_handlers
from botfleet_common.metrics import render_latest
from botfleet_rasa import metrics as bot_metrics

logger = logging.getLogger(__name__)


def observe_model(agent: Any) -> bool:
    """Sets the model gauges from the agent; True when a model is loaded."""
    loaded = agent is not None and agent.is_ready()
    bot_metrics.MODEL_LOADED.set(1 if loaded else 0)
    bot_metrics.MODEL_INFO.clear()
    if loaded:
        bot_metrics.MODEL_INFO.labels(agent.model_id or "unknown").set(1)
    return loaded


async def count_model_load(app: Any, _: Any) -> None:
    """Rasa loads the model in a before_server_start listener and, on failure, logs and
    serves without one; this makes that failure countable and alertable."""
    if not observe_model(getattr(app.ctx, "agent", None)):
        bot_metrics.MODEL_LOAD_FAILURES.inc()
        logger.error("server started without a loaded model", extra={"event.action": "model-load-failed"})


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
        ops.listener("after_server_start")(count_model_load)

        @ops.route("/metrics", methods=["GET"])
        async def metrics(request: Request) -> HTTPResponse:
            observe_model(getattr(request.app.ctx, "agent", None))  # a model can be replaced at runtime
            body, content_type = render_latest()
            return response.raw(body, content_type=content_type)

        @ops.route("/health/live", methods=["GET"])
        async def live(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @ops.route("/health/ready", methods=["GET"])
        async def ready(request: Request) -> HTTPResponse:
            agent = getattr(request.app.ctx, "agent", None)
            if agent is not None and observe_model(agent):
                return response.json({"status": "ready", "model_id": agent.model_id})
            return response.json({"status": "model not loaded"}, status=503)

        return ops
