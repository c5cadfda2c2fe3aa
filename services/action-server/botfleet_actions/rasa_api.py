"""The few calls the action server makes to Rasa's HTTP API (token-protected)."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.parse
import urllib.request
from typing import Any


class RasaAPIError(RuntimeError):
    pass


def _post(url: str, payload: Any, timeout: float) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")
    except OSError as error:
        raise RasaAPIError(f"Rasa API call failed: {error}") from error


async def append_events(sender_id: str, events: list[dict[str, Any]], timeout: float = 5.0) -> Any:
    """POST /conversations/{id}/tracker/events, authenticated with RASA_TOKEN."""
    base = os.environ.get("RASA_URL", "http://127.0.0.1:5005").rstrip("/")
    token = os.environ.get("RASA_TOKEN", "")
    url = (
        f"{base}/conversations/{urllib.parse.quote(sender_id, safe='')}/tracker/events"
        f"?token={urllib.parse.quote(token)}"
    )
    return await asyncio.to_thread(_post, url, events, timeout)
