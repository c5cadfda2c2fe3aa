"""Conversation → track assignments in Redis, shared by every gateway replica.

Key `<prefix>gateway:track:<channel>:<conversation id>`, value `{"track", "rolloutId"}`,
with a sliding TTL of one Rasa session. Every conversation is recorded, rollout or not:
one that started before a rollout must stay on stable when the canary appears.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from botfleet_gateway.routing import Assignment, Decision, Routing, route

logger = logging.getLogger("botfleet_gateway.stickiness")

# Anything a Redis call can fail with: its own errors, and sockets (refused, reset, timeouts).
REDIS_FAILURES: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


def encode_assignment(assignment: Assignment) -> str:
    return json.dumps({"track": assignment.track, "rolloutId": assignment.rollout_id}, separators=(",", ":"))


def decode_assignment(raw: bytes | str | None) -> Assignment | None:
    """None for a missing or unusable value (the conversation is then treated as new)."""
    if raw is None:
        return None
    try:
        document: Any = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(document, dict) or document.get("track") not in ("stable", "canary"):
        return None
    rollout_id = document.get("rolloutId")
    return Assignment(document["track"], rollout_id if isinstance(rollout_id, str) else None)


class AssignmentStore:
    def __init__(self, redis: Redis, prefix: str, ttl_seconds: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_seconds = ttl_seconds

    def key(self, channel: str, conversation_id: str) -> str:
        return f"{self.prefix}gateway:track:{channel}:{conversation_id}"

    async def get(self, channel: str, conversation_id: str) -> tuple[Assignment | None, bool]:
        """The assignment (refreshing its TTL: the session slides with every message),
        and whether a value existed at all (an unusable one must be overwritten)."""
        raw = await self.redis.getex(self.key(channel, conversation_id), ex=self.ttl_seconds)
        return decode_assignment(raw), raw is not None

    async def claim(self, channel: str, conversation_id: str, assignment: Assignment) -> Assignment:
        """Records a new conversation's assignment unless another replica got there first
        (SET NX); returns whichever assignment holds."""
        key = self.key(channel, conversation_id)
        if await self.redis.set(key, encode_assignment(assignment), nx=True, ex=self.ttl_seconds):
            return assignment
        winner = decode_assignment(await self.redis.getex(key, ex=self.ttl_seconds))
        if winner is None:  # expired in between, or unusable: ours it is
            await self.save(channel, conversation_id, assignment)
            return assignment
        return winner

    async def save(self, channel: str, conversation_id: str, assignment: Assignment) -> None:
        await self.redis.set(self.key(channel, conversation_id), encode_assignment(assignment), ex=self.ttl_seconds)

    async def ping(self) -> bool:
        return bool(await self.redis.ping())


class RateLimitedWarning:
    """Logs a warning at most once per interval, saying how many were held back: a Redis
    outage must not write one line per request."""

    def __init__(self, log: logging.Logger, interval_seconds: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.interval_seconds = interval_seconds
        self.clock = clock
        self._last: float | None = None
        self._suppressed = 0

    def warn(self, message: str, **labels: Any) -> bool:
        now = self.clock()
        if self._last is not None and now - self._last < self.interval_seconds:
            self._suppressed += 1
            return False
        self.log.warning(message, extra={**labels, "suppressed_since_last": self._suppressed})
        self._last, self._suppressed = now, 0
        return True


async def resolve(store: AssignmentStore, routing: Routing, channel: str, conversation_id: str) -> Decision:
    """Looks the conversation up, decides with `route`, and records the outcome: a new
    conversation with SET NX (two replicas seeing its first message agree on the
    winner's track), a move by overwriting. Raises one of REDIS_FAILURES when Redis fails."""
    existing, present = await store.get(channel, conversation_id)
    decision = route(existing, routing, conversation_id)
    if existing is None and not present:
        winner = await store.claim(channel, conversation_id, decision.record)
        if winner != decision.record:
            # Another replica assigned it first; follow its choice (it is new to us, not a move).
            followed = route(winner, routing, conversation_id)
            if followed.record != winner:
                await store.save(channel, conversation_id, followed.record)
            return Decision(
                track=followed.track,
                record=followed.record,
                moved_from=followed.moved_from,
                move_reason=followed.move_reason,
                new_conversation=False,
            )
        return decision
    if existing is None or decision.record != existing:
        await store.save(channel, conversation_id, decision.record)
    return decision
