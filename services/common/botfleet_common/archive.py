"""Archive of tracker events that left the active conversation window."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

import sqlalchemy as sa


def event_hash(event: dict[str, Any]) -> str:
    """A stable identity for an event, so that archiving twice stores it once."""
    return hashlib.sha256(json.dumps(event, sort_keys=True).encode()).hexdigest()


def append_events(engine: sa.engine.Engine, sender_id: str, events: Iterable[dict[str, Any]]) -> int:
    rows = [
        {
            "sender_id": sender_id,
            "event_hash": event_hash(event),
            "event_timestamp": float(event.get("timestamp") or 0.0),
            "event_type": str(event.get("event", "")),
            "event_json": json.dumps(event),
        }
        for event in events
    ]
    if not rows:
        return 0
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO conversation_events"
                " (sender_id, event_hash, event_timestamp, event_type, event_json)"
                " VALUES (:sender_id, :event_hash, :event_timestamp, :event_type, :event_json)"
                " ON CONFLICT (sender_id, event_hash) DO NOTHING"
            ),
            rows,
        )
    return len(rows)


def conversation_history(engine: sa.engine.Engine, sender_id: str) -> list[dict[str, Any]]:
    """Archived events of one conversation, oldest first."""
    with engine.connect() as connection:
        result = connection.execute(
            sa.text(
                "SELECT event_json FROM conversation_events WHERE sender_id = :sender_id"
                " ORDER BY event_timestamp"
            ),
            {"sender_id": sender_id},
        )
        return [json.loads(row[0]) for row in result]
