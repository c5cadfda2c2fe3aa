"""`botfleet rollout` against kmock's API emulator: what it prints, what it sets on the
Bot, and its exit codes. It runs as a subprocess, as a pipeline runs it (kmock serves
from this test's event loop, so nothing here may block it)."""

import asyncio
import json
import os
import socket
import sys

import pytest
from kmock_support import RESOURCES
from test_operator_kmock import BOTS, NS, a_bot, patch, post, stored, use

from botfleet_operator.rollout.canary import COMMAND_ANNOTATION, COMMANDS, PHASES, RolloutState, allows

PROGRESSING = {"phase": "Progressing", "stableVersion": "1.0.0", "canaryVersion": "2.0.0", "canaryWeight": 20, "currentStep": 1,
               "failedChecks": 1, "inconclusiveChecks": 0, "message": "analysis passed at step 1/3",
               "lastAnalysis": {"fallback_rate": {"status": "fail", "reason": "fallback_rate 0.4 above 0.15", "value": 0.4, "stableValue": 0.1}}}


@pytest.fixture
def emulator(kmock):
    return use(kmock, RESOURCES)


async def cli(api, *args):
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "botfleet_operator.rollout.cli", *args,
        env={**os.environ, "BOTFLEET_KUBE_API": api}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    return process.returncode, out.decode(), err.decode()


async def a_bot_with(emulator, rollout):
    await post(emulator, BOTS, a_bot(rollout={"strategy": "Canary", "canary": {}}))
    await patch(emulator, f"{BOTS}/hello/status", {"status": {"rollout": rollout, "stableModel": {"version": "1.0.0", "url": "https://m/1"}}})


async def test_status_prints_the_rollout_as_json_and_as_text(emulator):
    await a_bot_with(emulator, PROGRESSING)
    code, out, _ = await cli(str(emulator.url), "status", "hello", "-n", NS, "--json")
    assert code == 0, out
    shown = json.loads(out)
    assert shown["rollout"]["phase"] == "Progressing" and shown["rollout"]["canaryWeight"] == 20
    assert shown["servedModelVersion"] == "1.0.0" and shown["strategy"] == "Canary"
    code, out, _ = await cli(str(emulator.url), "status", "hello", "-n", NS)
    assert code == 0 and "Progressing, canary weight 20%" in out and "fallback_rate: fail" in out


async def test_a_command_sets_the_annotation_the_operator_reads(emulator):
    await a_bot_with(emulator, PROGRESSING)
    code, out, _ = await cli(str(emulator.url), "pause", "hello", "-n", NS, "--json")
    assert code == 0 and json.loads(out)["accepted"] is True
    bot = stored(emulator, "botfleet.io/v1alpha1/bots", "hello")
    assert bot["metadata"]["annotations"][COMMAND_ANNOTATION] == "pause"


async def test_a_command_the_phase_does_not_take_is_refused_and_sets_nothing(emulator):
    await a_bot_with(emulator, {**PROGRESSING, "phase": "Succeeded"})
    code, _, err = await cli(str(emulator.url), "abort", "hello", "-n", NS, "--json")
    assert code == 1 and json.loads(err)["error"] == "refused" and "Succeeded" in json.loads(err)["message"]
    bot = stored(emulator, "botfleet.io/v1alpha1/bots", "hello")
    assert COMMAND_ANNOTATION not in (bot["metadata"].get("annotations") or {})


async def test_no_rollout_is_a_refusal(emulator):
    await post(emulator, BOTS, a_bot())
    code, _, err = await cli(str(emulator.url), "promote", "hello", "-n", NS)
    assert code == 1 and "no rollout" in err


async def test_bad_input_and_an_unreachable_api(emulator):
    code, _, err = await cli(str(emulator.url), "status", "nobody", "-n", NS, "--json")
    assert code == 2 and json.loads(err)["error"] == "bad input"
    code, _, _ = await cli(str(emulator.url), "rewind", "hello")
    assert code == 2
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    code, _, err = await cli(f"http://127.0.0.1:{closed}", "status", "hello", "-n", NS, "--json")
    assert code == 3 and json.loads(err)["error"] == "infrastructure"


def test_the_cli_refuses_exactly_what_the_state_machine_would_ignore():
    from botfleet_operator.rollout import canary
    from botfleet_operator.rollout.spec import CanarySpec

    for phase in PHASES:
        for reason in (None, "Manual", "Inconclusive", "Step"):
            state = RolloutState(phase=phase, stable_version="1", canary_version="2", pause_reason=reason, step_started_at=0.0)
            for command in COMMANDS:
                transition = canary.decide(state, CanarySpec(), now=10.0, command=command, canary_ready=False)
                ignored = any(getattr(a, "reason", "") == "RolloutCommandIgnored" for a in transition.actions)
                assert allows(state, command) == (not ignored), (phase, reason, command)
