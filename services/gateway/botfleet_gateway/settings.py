"""The gateway's settings, all from the environment (the chart sets them)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from botfleet_gateway.adapters import SLACK_GRANULARITIES


@dataclass(frozen=True)
class Settings:
    # The routing file (a mounted ConfigMap); without one, everything goes to stable_url.
    routing_file: str | None = None
    stable_url: str = "http://127.0.0.1:5005"
    bot: str = "bot"
    routing_poll_seconds: float = 1.0
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "botfleet:"
    # Rasa's default session lifetime is 60 minutes; an idle conversation's assignment
    # lives as long as its session would.
    session_ttl_seconds: int = 3600
    # Short: a slow Redis must not hold requests up for long before they degrade to stable.
    redis_timeout_seconds: float = 0.5
    upstream_timeout_seconds: float = 30.0
    upstream_connect_timeout_seconds: float = 5.0
    upstream_max_connections: int = 100
    max_body_bytes: int = 1024 * 1024
    slack_conversation_granularity: str = "sender"
    socketio_path: str = "/socket.io"
    # How long a websocket opened without an Engine.IO session may take to send its
    # socket.io session_request before the gateway picks a track without it.
    socketio_session_wait_seconds: float = 3.0
    # An Engine.IO long poll is held by Rasa for up to its ping interval (25 s) before it
    # answers: polls need a read timeout past that, whatever the channels' one is.
    socketio_poll_timeout_seconds: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def number(name: str, default: float) -> float:
            raw = env.get(name)
            if raw is None or raw == "":
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{name} must be a number, not {raw!r}") from None
            if value <= 0:
                raise ValueError(f"{name} must be positive, not {raw!r}")
            return value

        granularity = env.get("BOTFLEET_SLACK_CONVERSATION_GRANULARITY") or cls.slack_conversation_granularity
        if granularity not in SLACK_GRANULARITIES:
            raise ValueError(f"BOTFLEET_SLACK_CONVERSATION_GRANULARITY must be one of {SLACK_GRANULARITIES}")
        # BOTFLEET_KEY_PREFIX is used as is; the rest of the stack's BOTFLEET_REDIS_KEY_PREFIX
        # ("botfleet", joined with ":") is the fallback so that one Bot's keys share a prefix.
        key_prefix = env.get("BOTFLEET_KEY_PREFIX")
        if key_prefix is None:
            key_prefix = env.get("BOTFLEET_REDIS_KEY_PREFIX", "botfleet") + ":"
        socketio_path = "/" + (env.get("BOTFLEET_SOCKETIO_PATH") or cls.socketio_path).strip("/")
        return cls(
            routing_file=env.get("BOTFLEET_ROUTING_FILE") or None,
            stable_url=(env.get("BOTFLEET_STABLE_URL") or cls.stable_url).rstrip("/"),
            bot=env.get("BOTFLEET_BOT") or cls.bot,
            routing_poll_seconds=number("BOTFLEET_ROUTING_POLL_SECONDS", cls.routing_poll_seconds),
            redis_url=env.get("BOTFLEET_REDIS_URL") or cls.redis_url,
            key_prefix=key_prefix,
            session_ttl_seconds=int(number("BOTFLEET_SESSION_TTL_SECONDS", cls.session_ttl_seconds)),
            redis_timeout_seconds=number("BOTFLEET_REDIS_TIMEOUT_SECONDS", cls.redis_timeout_seconds),
            upstream_timeout_seconds=number("BOTFLEET_UPSTREAM_TIMEOUT_SECONDS", cls.upstream_timeout_seconds),
            upstream_connect_timeout_seconds=number(
                "BOTFLEET_UPSTREAM_CONNECT_TIMEOUT_SECONDS", cls.upstream_connect_timeout_seconds
            ),
            upstream_max_connections=int(number("BOTFLEET_UPSTREAM_MAX_CONNECTIONS", cls.upstream_max_connections)),
            max_body_bytes=int(number("BOTFLEET_MAX_BODY_BYTES", cls.max_body_bytes)),
            slack_conversation_granularity=granularity,
            socketio_path=socketio_path,
            socketio_session_wait_seconds=number(
                "BOTFLEET_SOCKETIO_SESSION_WAIT_SECONDS", cls.socketio_session_wait_seconds
            ),
            socketio_poll_timeout_seconds=number("BOTFLEET_SOCKETIO_POLL_TIMEOUT_SECONDS", cls.socketio_poll_timeout_seconds),
        )
