"""ci/profile_rasa.py's attribution of py-spy samples to the parts of a turn."""

import importlib.util
import sys
from pathlib import Path

CI = Path(__file__).resolve().parents[2] / "ci"
sys.path.insert(0, str(CI))  # profile_rasa imports its sibling bench.py, as it does when run
SPEC = importlib.util.spec_from_file_location("profile_rasa", CI / "profile_rasa.py")
assert SPEC and SPEC.loader
profile_rasa = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(profile_rasa)

HANDLE = "handle_message (rasa/core/agent.py:420);handle_message (rasa/core/processor.py:150)"


def test_featurisation_inside_a_policy_counts_as_featurisation():
    stack = f"{HANDLE};predict_action_probabilities (rasa/core/policies/rule_policy.py:900);past_states (rasa/shared/core/trackers.py:300)"
    assert profile_rasa.part_of(stack) == "dialogue featurisation"
    assert profile_rasa.part_of(f"{HANDLE};predict_action_probabilities (rasa/core/policies/rule_policy.py:900)") == "policies"


def test_lock_and_tracker_frames_win_over_the_handler_around_them():
    assert profile_rasa.part_of(f"{HANDLE};lock (botfleet_rasa/lock_store.py:90)") == "lock store"
    assert profile_rasa.part_of(f"{HANDLE};save (botfleet_rasa/tracker_store.py:140);publish (botfleet_rasa/event_broker.py:50)") == "event broker"
    assert profile_rasa.part_of(f"{HANDLE};save (botfleet_rasa/tracker_store.py:140)") == "tracker save"


def test_summary_shares_add_up_and_skip_malformed_lines():
    raw = "\n".join([
        f"{HANDLE};process (botfleet_rasa/components/remote_intent.py:200) 30",
        f"{HANDLE};run (rasa/core/actions/action.py:700) 10",
        "garbage",
        "serve (sanic/server.py:10) 10",
        "run (multiprocessing/process.py:108);serve (sanic/server/runners.py:155) 99",
    ])
    summary = profile_rasa.summarise(raw)
    assert summary["samples"] == 50
    assert summary["share"] == {
        "nlu: remote intent classifier (blocking HTTP to model serving)": 0.6,
        "actions (running them, HTTP to the action server)": 0.2,
        "other": 0.2,
    }
