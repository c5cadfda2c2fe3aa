"""Fixes to Rasa 3.6.21, the last Rasa Open Source release (no upstream fix will come).

`apply()` runs when the Rasa server first imports botfleet_rasa (its tracker store, lock
store, channels and components all live here), so every worker has them.

- **Action server responses.** `RemoteAction._validate_action_result` called
  `jsonschema.validate()` for every response of the action server. That call first
  checks the schema itself against the JSON Schema meta-schema and then builds a new
  validator. Profiling the demo bot under load (ci/profile_rasa.py) put it at about a
  quarter of a Rasa worker's time. The schema is a constant, so it is checked and
  compiled once here. Responses are validated exactly as before, and an invalid one
  raises the same ValidationError with the same message.
"""

from __future__ import annotations

import functools
from typing import Any, Dict

from jsonschema import exceptions as jsonschema_exceptions
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from rasa.core.actions.action import RemoteAction
from rasa.shared.constants import DOCS_BASE_URL


@functools.lru_cache(maxsize=1)
def action_response_validator() -> Validator:
    schema = RemoteAction.action_response_format_spec()
    validator_class = validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def validate_action_result(self: RemoteAction, result: Dict[str, Any]) -> bool:
    """RemoteAction._validate_action_result with a validator compiled once."""
    error = jsonschema_exceptions.best_match(action_response_validator().iter_errors(result))
    if error is not None:
        error.message += (
            f". Failed to validate Action server response from API, "
            f"make sure your response from the Action endpoint is valid. "
            f"For more information about the format visit "
            f"{DOCS_BASE_URL}/custom-actions"
        )
        raise error
    return True


def apply() -> None:
    RemoteAction._validate_action_result = validate_action_result  # type: ignore[method-assign]
