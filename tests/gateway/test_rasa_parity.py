"""The adapters against Rasa's own connectors: the same request bytes through Rasa 3.6's
channel blueprints (in the Rasa venv, see rasa_sender_ids.py) must start a turn with
exactly the sender id the gateway keys the conversation on.

Webex Teams is left out: its connector fetches the message from Webex's API to read the
room id, which cannot be reached from here (its adapter reads the webhook's data.roomId,
the same value; test_adapters.py covers it)."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

from botfleet_gateway.adapters import build_adapters
from channel_cases import CASES

ROOT = Path(__file__).resolve().parents[2]
RASA_PYTHON = ROOT / ".venvs/rasa/bin/python"
RUNNER = Path(__file__).with_name("rasa_sender_ids.py")
OFFLINE_ONLY = {"webexteams"}


def test_rasa_connectors_use_the_senders_the_adapters_compute(tmp_path):
    cases = [case for case in CASES if case.channel not in OFFLINE_ONLY]
    request = [
        {"id": c.id, "channel": c.channel, "body_b64": base64.b64encode(c.body).decode(), "content_type": c.content_type, "options": c.options}
        for c in cases
    ]
    result = subprocess.run(
        [str(RASA_PYTHON), str(RUNNER), str(tmp_path / "senders.json")], input=json.dumps(request), capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-4000:]
    rasa_senders = json.loads((tmp_path / "senders.json").read_text())
    mismatches = {}
    for case in cases:
        adapter = build_adapters(case.options.get("conversation_granularity", "sender"))[case.channel]
        gateway_sender = adapter.conversation_id(case.body, case.content_type)
        if not (rasa_senders[case.id] == gateway_sender == case.expected):
            mismatches[case.id] = {"rasa": rasa_senders[case.id], "gateway": gateway_sender, "expected": case.expected}
    assert not mismatches, mismatches
    # The runner really exercised every other channel.
    assert {c.channel for c in cases} == set(build_adapters()) - OFFLINE_ONLY
