"""The routing in force: from the routing file, re-read when its content changes.

The chart mounts the file from a ConfigMap. kubelet updates such a mount by writing a new
directory and swapping a `..data` symlink atomically, so the file's inode and mtime say
little: the content is read each poll (it is a few hundred bytes) and compared.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable

from botfleet_gateway.routing import Routing, RoutingError, parse_routing, stable_only

logger = logging.getLogger("botfleet_gateway.routing")


class RoutingSource:
    """Holds the last good routing. Without a file, a fixed stable-only routing."""

    def __init__(
        self,
        path: str | None,
        stable_url: str,
        bot: str = "bot",
        on_change: Callable[[Routing], None] | None = None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self.path = path
        self._on_change = on_change or (lambda routing: None)
        self._on_error = on_error or (lambda: None)
        # What the last poll saw (content hash, or the error), so that one bad version of
        # the file is logged and counted once, not once a second.
        self._last_seen: str | None = None
        self.current: Routing | None = None
        if path is None:
            self._set(stable_only(stable_url, bot))

    @property
    def loaded(self) -> bool:
        return self.current is not None

    def _set(self, routing: Routing) -> None:
        previous, self.current = self.current, routing
        if routing != previous:
            self._on_change(routing)

    def reload(self) -> bool:
        """Reads the file once; True when a new routing took effect."""
        if self.path is None:
            return False
        try:
            with open(self.path, "rb") as file:
                content = file.read()
        except OSError as error:
            return self._failed(f"unreadable:{type(error).__name__}", f"routing file unreadable: {error}")
        fingerprint = hashlib.sha256(content).hexdigest()
        if fingerprint == self._last_seen:
            return False
        try:
            routing = parse_routing(json.loads(content.decode("utf-8")))
        except (UnicodeDecodeError, ValueError, RecursionError) as error:  # RoutingError is a ValueError
            kind = "invalid" if isinstance(error, RoutingError) else "not JSON"
            return self._failed(fingerprint, f"routing file {kind}: {error}")
        self._last_seen = fingerprint
        previous = self.current
        self._set(routing)
        if routing != previous:
            logger.info(
                "routing loaded",
                extra={
                    "bot": routing.bot,
                    "canary_state": routing.canary.state,
                    "canary_weight": routing.effective_weight,
                    "rollout_id": routing.canary.rollout_id,
                },
            )
            return True
        return False

    def _failed(self, fingerprint: str, message: str) -> bool:
        if fingerprint != self._last_seen:
            self._last_seen = fingerprint
            self._on_error()
            keeping = "keeping the last good routing" if self.loaded else "no routing loaded yet"
            logger.warning(f"{message}; {keeping}", extra={"routing_file": self.path})
        return False

    async def watch(self, interval_seconds: float) -> None:
        """Polls until cancelled."""
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                self.reload()
            except Exception:  # never let the watcher die: the last good routing stays
                logger.exception("routing reload failed")
