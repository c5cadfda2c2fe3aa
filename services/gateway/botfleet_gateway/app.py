"""The FastAPI app: /healthz, /readyz, /metrics, socket.io, and every /webhooks/ channel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket

from botfleet_gateway.adapters import build_adapters
from botfleet_gateway.gateway import Gateway
from botfleet_gateway.metrics import GatewayMetrics
from botfleet_gateway.proxy import new_upstream_client
from botfleet_gateway.routing_source import RoutingSource
from botfleet_gateway.settings import Settings
from botfleet_gateway.socketio_proxy import handle_polling, handle_websocket, is_socketio_path
from botfleet_gateway.stickiness import AssignmentStore

logger = logging.getLogger("botfleet_gateway")
ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    metrics = GatewayMetrics()
    routing_source = RoutingSource(
        settings.routing_file,
        settings.stable_url,
        settings.bot,
        on_change=metrics.set_routing,
        on_error=metrics.routing_reload_errors.inc,
    )
    routing_source.reload()
    redis = Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        # A failed call degrades to stable at once; retrying would only hold the request.
        retry_on_timeout=False,
        health_check_interval=0,
    )
    gateway = Gateway(
        settings=settings,
        routing_source=routing_source,
        store=AssignmentStore(redis, settings.key_prefix, settings.session_ttl_seconds),
        client=new_upstream_client(
            settings.upstream_timeout_seconds,
            settings.upstream_connect_timeout_seconds,
            settings.upstream_max_connections,
        ),
        metrics=metrics,
        adapters=build_adapters(settings.slack_conversation_granularity),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        watcher = asyncio.create_task(routing_source.watch(settings.routing_poll_seconds)) if settings.routing_file else None
        logger.info(
            "gateway started",
            extra={"routing_file": settings.routing_file, "routing_loaded": routing_source.loaded},
        )
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await gateway.client.aclose()
            await redis.aclose()

    app = FastAPI(title="botfleet gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gateway = gateway

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        # Ready once a routing is loaded; Redis is not required (without it, stable only).
        routing = gateway.routing
        if routing is None:
            return JSONResponse({"status": "routing not loaded", "routing_file": settings.routing_file}, status_code=503)
        return JSONResponse(
            {
                "status": "ok",
                "bot": routing.bot,
                "canary": {"state": routing.canary.state, "weight": routing.effective_weight, "rolloutId": routing.canary.rollout_id},
            }
        )

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.websocket("/{path:path}")
    async def websocket_endpoint(websocket: WebSocket) -> None:
        if not is_socketio_path(websocket.url.path, settings.socketio_path):
            await websocket.close(code=1008)
            return
        await handle_websocket(gateway, websocket)

    @app.api_route("/{path:path}", methods=ALL_METHODS, include_in_schema=False)
    async def channel_request(request: Request) -> Response:
        if is_socketio_path(request.url.path, settings.socketio_path):
            return await handle_polling(gateway, request)
        return await gateway.handle_webhook(request)

    return app
