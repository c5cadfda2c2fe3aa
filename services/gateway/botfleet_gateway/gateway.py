"""The gateway's request handling: find the conversation, pick its track, forward."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from botfleet_gateway.adapters import ChannelAdapter, MalformedRequest, match_path, needs_conversation
from botfleet_gateway.metrics import GatewayMetrics
from botfleet_gateway.proxy import BodyTooLarge, forward, read_body
from botfleet_gateway.routing import Assignment, Decision, Routing, Track
from botfleet_gateway.routing_source import RoutingSource
from botfleet_gateway.settings import Settings
from botfleet_gateway.stickiness import REDIS_FAILURES, AssignmentStore, RateLimitedWarning, resolve

logger = logging.getLogger("botfleet_gateway")

STABLE: Decision = Decision(track="stable", record=Assignment("stable"))


def conversation_ref(conversation_id: str) -> str:
    """What logs say about a conversation: a short hash. Sender ids are phone numbers
    (Twilio), names (Hangouts) or user ids; none belongs in a log line."""
    return hashlib.sha256(conversation_id.encode()).hexdigest()[:12]


def error_response(status: int, error: str, detail: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail, **extra}, status_code=status)


@dataclass
class Gateway:
    settings: Settings
    routing_source: RoutingSource
    store: AssignmentStore
    client: httpx.AsyncClient
    metrics: GatewayMetrics
    adapters: dict[str, ChannelAdapter]

    def __post_init__(self) -> None:
        self.redis_warning = RateLimitedWarning(logger)

    @property
    def routing(self) -> Routing | None:
        return self.routing_source.current

    # --- deciding ---------------------------------------------------------------------------

    def redis_failed(self, error: BaseException) -> None:
        self.metrics.dependency_errors.labels(dependency="redis").inc()
        self.redis_warning.warn(
            "redis unavailable, routing to stable without stickiness", error_type=type(error).__name__
        )

    async def decide(self, channel: str, conversation_id: str, routing: Routing) -> Decision:
        """The conversation's track; stable when Redis fails (never an error for the client:
        a conversation that cannot be looked up must not land on a canary by chance)."""
        try:
            decision = await resolve(self.store, routing, channel, conversation_id)
        except REDIS_FAILURES as error:
            self.redis_failed(error)
            return STABLE
        self.observe_decision(channel, conversation_id, decision)
        return decision

    def observe_decision(self, channel: str, conversation_id: str, decision: Decision) -> None:
        if decision.new_conversation:
            self.metrics.assignments.labels(channel=channel, track=decision.track).inc()
        if decision.moved_from is not None:
            self.metrics.track_moves.labels(
                from_track=decision.moved_from, to_track=decision.track, reason=decision.move_reason or ""
            ).inc()
            logger.info(
                "conversation moved",
                extra={
                    "channel": channel,
                    "conversation": conversation_ref(conversation_id),
                    "from_track": decision.moved_from,
                    "to_track": decision.track,
                    "reason": decision.move_reason,
                },
            )

    # --- forwarding -------------------------------------------------------------------------

    def reject(self, channel: str, reason: str, status: int, detail: str, **extra: object) -> JSONResponse:
        self.metrics.rejected.labels(channel=channel, reason=reason).inc()
        logger.debug("request rejected", extra={"channel": channel, "reason": reason, "status": status})
        return error_response(status, reason, detail, **extra)

    async def forward_to(
        self,
        channel: str,
        track: Track,
        routing: Routing,
        request: Request,
        body: bytes,
        started: float,
        read_timeout: float | None = None,
    ) -> Response:
        try:
            response = await forward(self.client, routing.url_for(track), request, body, read_timeout)
        except httpx.TimeoutException as error:
            response = self.upstream_failed(channel, track, error, 504, "upstream_timeout")
        except httpx.TransportError as error:
            response = self.upstream_failed(channel, track, error, 502, "upstream_unavailable")
        elapsed = time.perf_counter() - started
        self.metrics.requests.labels(channel=channel, track=track, code=str(response.status_code)).inc()
        self.metrics.request_duration.labels(channel=channel, track=track).observe(elapsed)
        logger.debug(
            "request forwarded",
            extra={
                "channel": channel,
                "track": track,
                "method": request.method,
                "status": response.status_code,
                "duration_ms": round(elapsed * 1000, 1),
            },
        )
        return response

    def upstream_failed(self, channel: str, track: Track, error: Exception, status: int, reason: str) -> JSONResponse:
        self.metrics.dependency_errors.labels(dependency=f"rasa_{track}").inc()
        logger.warning(
            "rasa unreachable", extra={"channel": channel, "track": track, "error_type": type(error).__name__}
        )
        return error_response(status, reason, f"the {track} Rasa did not answer", track=track)

    async def routing_and_body(self, channel: str, request: Request) -> tuple[Routing, bytes] | Response:
        """What every forwarded request needs first: the routing (503 until it is read) and
        the body (413 above the limit, without reading the rest)."""
        routing = self.routing
        if routing is None:
            return error_response(503, "routing_not_loaded", "the routing file has not been read yet")
        try:
            return routing, await read_body(request, self.settings.max_body_bytes)
        except BodyTooLarge as error:
            return self.reject(channel, "body_too_large", 413, str(error), limit_bytes=error.limit)

    async def handle_webhook(self, request: Request) -> Response:
        """/webhooks/<channel>/...: one chat-channel request."""
        started = time.perf_counter()
        match = match_path(self.adapters, request.url.path)
        if match is None:
            return self.reject("unknown", "unknown_path", 404, "no chat channel serves this path")
        channel = match.adapter.name
        if request.method not in match.methods:
            return self.reject(channel, "method_not_allowed", 405, f"{request.method} is not served here")
        loaded = await self.routing_and_body(channel, request)
        if isinstance(loaded, Response):
            return loaded
        routing, body = loaded
        decision = STABLE
        conversation_id: str | None = None
        if needs_conversation(match, request.method) and not match.adapter.skips_routing(request.headers):
            try:
                conversation_id = match.adapter.conversation_id(body, request.headers.get("content-type", ""))
            except MalformedRequest as error:
                return self.reject(channel, "malformed", 400, str(error))
            if conversation_id is not None:
                decision = await self.decide(channel, conversation_id, routing)
        if decision.track == "canary" and conversation_id is not None:
            return await self.forward_to_canary(channel, conversation_id, decision, routing, request, body, started)
        return await self.forward_to(channel, decision.track, routing, request, body, started)

    async def forward_to_canary(
        self, channel: str, conversation_id: str, decision: Decision, routing: Routing, request: Request, body: bytes, started: float
    ) -> Response:
        """The canary, unless it refuses the connection: then the request never reached it
        (so it is safe to send again), and the conversation moves to stable for good. This
        covers a canary scaled to zero before this replica read the routing that says so
        (the kubelet refreshes the mounted file only every minute or so). A timeout is not
        retried: the canary may have handled the message."""
        try:
            response = await forward(self.client, routing.url_for("canary"), request, body, None)
        except httpx.ConnectError as error:
            self.metrics.dependency_errors.labels(dependency="rasa_canary").inc()
            moved = Decision(track="stable", record=Assignment("stable", decision.record.rollout_id), moved_from="canary",
                             move_reason="canary_unreachable")
            try:
                await self.store.save(channel, conversation_id, moved.record)
            except REDIS_FAILURES as redis_error:
                self.redis_failed(redis_error)
            self.observe_decision(channel, conversation_id, moved)
            logger.warning("canary unreachable, conversation moved to stable",
                           extra={"channel": channel, "conversation": conversation_ref(conversation_id), "error_type": type(error).__name__})
            return await self.forward_to(channel, "stable", routing, request, body, started)
        except httpx.TimeoutException as error:
            response = self.upstream_failed(channel, "canary", error, 504, "upstream_timeout")
        except httpx.TransportError as error:
            response = self.upstream_failed(channel, "canary", error, 502, "upstream_unavailable")
        elapsed = time.perf_counter() - started
        self.metrics.requests.labels(channel=channel, track="canary", code=str(response.status_code)).inc()
        self.metrics.request_duration.labels(channel=channel, track="canary").observe(elapsed)
        return response
