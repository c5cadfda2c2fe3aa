"""Counters Rasa itself does not keep, which a canary analysis compares per track.

The action server is shared by both tracks of a rollout, so its own error counter cannot
tell a canary model that calls actions badly from the stable one; Rasa's side of each call
can. `apply()` wraps RemoteAction.run once per process, like rasa_fixes."""

from __future__ import annotations

import functools
from typing import Any, Awaitable, Callable, List

from rasa.core.actions.action import ActionExecutionRejection, RemoteAction
from rasa.shared.core.events import Event

from botfleet_rasa import metrics

_WRAPPED = "_botfleet_instrumented"


def count_action_server_calls(
    run: Callable[..., Awaitable[List[Event]]],
) -> Callable[..., Awaitable[List[Event]]]:
    @functools.wraps(run)
    async def counted(self: RemoteAction, *args: Any, **kwargs: Any) -> List[Event]:
        try:
            result = await run(self, *args, **kwargs)
        except ActionExecutionRejection:
            # A rejection (e.g. a form slot that did not validate) is dialogue, not a failure.
            metrics.ACTION_SERVER_CALLS.labels("rejected").inc()
            raise
        except Exception:
            metrics.ACTION_SERVER_CALLS.labels("error").inc()
            metrics.ACTION_SERVER_ERRORS.inc()
            raise
        metrics.ACTION_SERVER_CALLS.labels("ok").inc()
        return result

    setattr(counted, _WRAPPED, True)
    return counted


def apply() -> None:
    if not getattr(RemoteAction.run, _WRAPPED, False):
        RemoteAction.run = count_action_server_calls(RemoteAction.run)  # type: ignore[method-assign]
