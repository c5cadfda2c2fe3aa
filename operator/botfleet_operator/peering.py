"""Whether this operator is the active one among its kopf peers.

kopf pauses its own watches and handlers when a peer of higher (or the same) priority
is alive in the peering object, and when peering is mandatory but the object is
missing. The operator's resync loop is not one of kopf's handlers, so it asks the same
question itself, from the same peering objects and with kopf's own rule.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

DEFAULT_LIFETIME = 60  # seconds: what kopf assumes for a peer that states none


def _lastseen(value: Any, now: datetime) -> datetime:
    if not value:
        return now
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return now
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def live_rivals(peering: dict[str, Any], identity: str | None, priority: int, now: datetime) -> list[str]:
    """Peers in one peering object that make kopf pause this operator: alive (last seen
    within their lifetime) and of a priority not lower than ours. Ourselves excluded by
    identity (kopf's POD_ID) or, without one, by our own priority."""
    rivals = []
    for peer, info in ((peering or {}).get("status") or {}).items():
        if not isinstance(info, dict):
            continue
        peer_priority = int(info.get("priority") or 0)
        if peer == identity or (identity is None and peer_priority == priority):
            continue
        lifetime = timedelta(seconds=int(info.get("lifetime", DEFAULT_LIFETIME)))
        if _lastseen(info.get("lastseen"), now) + lifetime <= now:
            continue  # dead: its record expired
        if peer_priority >= priority:
            rivals.append(peer)
    return rivals


def paused(peerings: Iterable[dict[str, Any] | None], identity: str | None, priority: int, now: datetime) -> bool:
    """True when kopf would be paused: a peering object is missing (peering is
    mandatory with --peering), or one names a live rival."""
    return any(peering is None or live_rivals(peering, identity, priority, now) for peering in peerings)
