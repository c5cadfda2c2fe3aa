"""The fixes botfleet applies to Rasa 3.6.21 behave exactly like Rasa's own code."""

import jsonschema
import pytest
from rasa.core.actions.action import RemoteAction
from rasa.utils.endpoints import EndpointConfig

import botfleet_rasa  # noqa: F401  (importing it applies the fixes)
from botfleet_rasa import rasa_fixes

VALID = [
    {"events": [], "responses": []},
    {"events": [{"event": "slot", "name": "product", "value": "laptop", "timestamp": None}], "responses": [{"text": "hi"}]},
    {"events": [{"event": "followup", "name": "action_listen"}, {"event": "active_loop", "name": None}]},
    {},
]
INVALID = [
    {"events": [{"event": "slot"}]},  # a slot event without a name
    {"events": "not a list"},
    {"events": [{"event": "no_such_event"}]},
    {"responses": ["not an object"]},
]


def rasa_own_validation(result):
    """What Rasa 3.6.21 itself ran for every action server response."""
    jsonschema.validate(result, RemoteAction.action_response_format_spec())


def test_importing_botfleet_rasa_installs_the_fix():
    assert RemoteAction._validate_action_result is rasa_fixes.validate_action_result


@pytest.mark.parametrize("result", VALID)
def test_valid_responses_pass_as_they_did(result):
    rasa_own_validation(result)
    action = RemoteAction("action_check", EndpointConfig("http://127.0.0.1:1"))
    assert action._validate_action_result(result) is True


@pytest.mark.parametrize("result", INVALID)
def test_invalid_responses_fail_with_rasa_own_error(result):
    with pytest.raises(jsonschema.ValidationError) as rasa_error:
        rasa_own_validation(result)
    action = RemoteAction("action_check", EndpointConfig("http://127.0.0.1:1"))
    with pytest.raises(jsonschema.ValidationError) as ours:
        action._validate_action_result(result)
    assert ours.value.message.startswith(rasa_error.value.message)
    assert ours.value.message.endswith("/custom-actions")
    assert list(ours.value.absolute_path) == list(rasa_error.value.absolute_path)


def test_the_schema_is_compiled_once():
    assert rasa_fixes.action_response_validator() is rasa_fixes.action_response_validator()
