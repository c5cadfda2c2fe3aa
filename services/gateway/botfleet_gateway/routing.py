"""Which Rasa track a conversation goes to: pure functions, no I/O.

A Bot has a stable track and, during a rollout, a canary track. New conversations are
split between them by a deterministic hash, so that every gateway replica makes the same
choice; started conversations keep their track (recorded by `stickiness`), except that a
conversation on a canary that is no longer active moves to stable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal, get_args

Track = Literal["stable", "canary"]
CanaryState = Literal["Progressing", "Paused", "Promoting", "RolledBack", "Aborted", "Promoted", "None"]
# canary_unreachable: the canary refused the connection (scaled away before this replica
# read the routing that says so); decided by the gateway, not by route().
MoveReason = Literal["rollback", "promoted", "new_rollout", "canary_inactive", "canary_unreachable"]

CANARY_STATES: frozenset[str] = frozenset(get_args(CanaryState))
# States in which the canary takes new conversations and keeps the ones it has.
ACTIVE_CANARY_STATES: frozenset[str] = frozenset({"Progressing", "Paused", "Promoting"})
ROLLED_BACK_STATES: frozenset[str] = frozenset({"RolledBack", "Aborted"})


class RoutingError(ValueError):
    """The routing document does not match the schema."""


@dataclass(frozen=True)
class TrackTarget:
    """Where one track's Rasa answers, and which model it serves (informational)."""

    url: str
    model: str | None = None


@dataclass(frozen=True)
class CanaryConfig:
    state: str = "None"
    weight: int = 0
    rollout_id: str | None = None


@dataclass(frozen=True)
class Routing:
    """The current routing configuration of one Bot."""

    bot: str
    stable: TrackTarget
    canary_target: TrackTarget | None = None
    canary: CanaryConfig = CanaryConfig()

    @property
    def canary_active(self) -> bool:
        return self.canary_target is not None and self.canary.state in ACTIVE_CANARY_STATES

    @property
    def effective_weight(self) -> int:
        """The share of new conversations the canary gets now (0 when inactive)."""
        return self.canary.weight if self.canary_active else 0

    def url_for(self, track: Track) -> str:
        if track == "canary" and self.canary_target is not None:
            return self.canary_target.url
        return self.stable.url


@dataclass(frozen=True)
class Assignment:
    """What is recorded for a conversation: its track, and the rollout it was assigned in
    (a canary assignment is only valid for the rollout that made it)."""

    track: Track
    rollout_id: str | None = None


@dataclass(frozen=True)
class Decision:
    track: Track
    record: Assignment
    moved_from: Track | None = None
    move_reason: MoveReason | None = None
    new_conversation: bool = False


def stable_only(url: str, bot: str = "bot") -> Routing:
    """The configuration without a routing file: everything to one Rasa."""
    return Routing(bot=bot, stable=TrackTarget(url=url))


def choose_track(conversation_key: str, rollout_id: str, canary_weight: int) -> Track:
    """Deterministic split of new conversations: sha256(rollout id, key) mapped onto 0..99
    goes to the canary when below the weight. sha256 rather than hash(), which Python seeds
    per process: every replica, and a restarted one, must choose the same."""
    if canary_weight <= 0:
        return "stable"
    digest = hashlib.sha256(f"{rollout_id}\x00{conversation_key}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") % 100
    return "canary" if bucket < canary_weight else "stable"


def route(assignment: Assignment | None, routing: Routing, conversation_key: str) -> Decision:
    """The track for one message, and the assignment to record after it.

    1. No assignment: a new conversation, split by `choose_track` while a canary is
       active, else stable.
    2. On the canary of the current active rollout: canary (raising the weight never moves
       a started conversation).
    3. On stable: stable, always (a conversation never moves onto a canary mid-way).
    4. On a canary that is no longer active (rolled back, promoted, another rollout):
       stable, recorded as stable, and reported as a move.
    """
    rollout_id = routing.canary.rollout_id
    if assignment is None:
        track: Track = "stable"
        if routing.canary_active:
            track = choose_track(conversation_key, rollout_id or "", routing.canary.weight)
        return Decision(track=track, record=Assignment(track, rollout_id), new_conversation=True)
    if assignment.track == "stable":
        return Decision(track="stable", record=assignment)
    if routing.canary_active and assignment.rollout_id == rollout_id:
        return Decision(track="canary", record=assignment)
    return Decision(
        track="stable",
        record=Assignment("stable", rollout_id),
        moved_from="canary",
        move_reason=_move_reason(assignment, routing),
    )


def _move_reason(assignment: Assignment, routing: Routing) -> MoveReason:
    if assignment.rollout_id != routing.canary.rollout_id:
        return "new_rollout"
    if routing.canary.state in ROLLED_BACK_STATES:
        return "rollback"
    if routing.canary.state == "Promoted":
        return "promoted"
    # Same rollout, but its state is "None" or the canary track is gone from the file.
    return "canary_inactive"


def parse_routing(document: Any) -> Routing:
    """Validates the routing file's JSON (see the README) into a `Routing`."""
    if not isinstance(document, dict):
        raise RoutingError("the routing document must be a JSON object")
    bot = document.get("bot", "bot")
    if not isinstance(bot, str) or not bot:
        raise RoutingError("'bot' must be a non-empty string")
    tracks = document.get("tracks")
    if not isinstance(tracks, dict) or "stable" not in tracks:
        raise RoutingError("'tracks' must be an object with at least a 'stable' track")
    unknown = set(tracks) - {"stable", "canary"}
    if unknown:
        raise RoutingError(f"unknown tracks {sorted(unknown)}; only 'stable' and 'canary' exist")
    stable = _parse_target(tracks["stable"], "stable")
    canary_target = _parse_target(tracks["canary"], "canary") if tracks.get("canary") is not None else None
    return Routing(bot=bot, stable=stable, canary_target=canary_target, canary=_parse_canary(document.get("canary")))


def _parse_target(value: Any, name: str) -> TrackTarget:
    if not isinstance(value, dict):
        raise RoutingError(f"tracks.{name} must be an object")
    url = value.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise RoutingError(f"tracks.{name}.url must be an http(s) URL")
    model = value.get("model")
    if model is not None and not isinstance(model, str):
        raise RoutingError(f"tracks.{name}.model must be a string")
    return TrackTarget(url=url.rstrip("/"), model=model)


def _parse_canary(value: Any) -> CanaryConfig:
    if value is None:
        return CanaryConfig()
    if not isinstance(value, dict):
        raise RoutingError("'canary' must be an object")
    state = value.get("state", "None")
    if state is None:
        state = "None"
    if state not in CANARY_STATES:
        raise RoutingError(f"canary.state must be one of {sorted(CANARY_STATES)}")
    weight = value.get("weight", 0)
    # bool is an int in Python; "weight": true is a mistake, not 1 %.
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
        raise RoutingError("canary.weight must be an integer from 0 to 100")
    rollout_id = value.get("rolloutId")
    if rollout_id is not None and not isinstance(rollout_id, str):
        raise RoutingError("canary.rolloutId must be a string")
    return CanaryConfig(state=state, weight=weight, rollout_id=rollout_id or None)
