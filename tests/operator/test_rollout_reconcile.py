"""A canary rollout driven through reconcile(): what each tick renders for the two
tracks and the gateway, and what it records in the Bot's status. The analysis runner
is injected (its verdicts are what these tests vary); the real analysis against a real
Prometheus is tested in tests/operator/rollout."""

import copy
import json

import pytest
from test_reconcile import MemoryKube, a_bot

from botfleet_operator import discovery, drift
from botfleet_operator import reconcile as reconciler
from botfleet_operator.rollout.analysis import CheckResult
from botfleet_operator.rollout.canary import COMMAND_ANNOTATION

V2 = {"url": "https://models.example.com/hello/model-2.0.0.tar.gz", "version": "2.0.0"}
CANARY = {"strategy": "Canary", "canary": {"steps": [{"setWeight": 25}, {"setWeight": 50}],
                                           "analysis": {"interval": "30s", "threshold": 2}, "drainSeconds": 60}}


@pytest.fixture(autouse=True)
def fresh_caches():
    reconciler._crd_cache.clear()
    discovery.SERVED.clear()
    drift.CACHE.clear()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class Verdicts:
    """The analysis runner: every check gets `status`; counts how often it ran."""

    def __init__(self, status="pass") -> None:
        self.status, self.runs = status, 0

    def __call__(self, canary, namespace, bot, now):
        self.runs += 1
        value = 0.6 if self.status == "fail" else 0.1
        return tuple(CheckResult(check.name, self.status, value if self.status != "unknown" else None, 0.1, f"{check.name} {value}") for check in canary.metrics)


class Rollout:
    """One Bot over a MemoryKube: reconciles as the operator would (the status it wrote
    is the next reconcile's), and stands in for the Deployment controller."""

    def __init__(self, verdicts) -> None:
        self.kube, self.clock, self.verdicts = MemoryKube(), Clock(), verdicts
        self.bot = a_bot(rollout=CANARY)
        self.outcomes = []
        self.reconcile(new=True)
        self.make_ready("rasa", "actions", "model-serving", "gateway")

    def reconcile(self, new=False):
        outcome = reconciler.reconcile(self.kube, self.bot, new=new, children=self.kube.children, analyse=self.verdicts, clock=self.clock)
        self.bot["status"] = outcome.status
        if outcome.clear_rollout_command:
            self.bot["metadata"].get("annotations", {}).pop(COMMAND_ANNOTATION, None)
        self.outcomes.append(outcome)
        return outcome

    def make_ready(self, *components):
        for component in components:
            deployment = self.kube.objects[("Deployment", "bots", f"hello-{component}")]
            replicas = deployment["spec"].get("replicas", 1)
            deployment["metadata"]["generation"] = deployment["metadata"].get("generation", 1)
            deployment["status"] = {"replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas,
                                    "availableReplicas": replicas, "observedGeneration": deployment["metadata"]["generation"]}

    def new_model(self, model=V2):
        self.bot = copy.deepcopy(self.bot)
        self.bot["spec"]["model"] = dict(model)
        self.bot["metadata"]["generation"] += 1

    def tick(self, seconds=10):
        self.clock.now += seconds
        return self.reconcile()

    def deployment(self, component):
        return self.kube.objects.get(("Deployment", "bots", f"hello-{component}"))

    def version(self, component):
        return self.deployment(component)["spec"]["template"]["metadata"]["annotations"]["botfleet.io/model-version"]

    def routing(self):
        return json.loads(self.kube.objects[("ConfigMap", "bots", "hello-routing")]["data"]["routing.json"])

    @property
    def rollout(self):
        return self.bot["status"].get("rollout") or {}

    def events(self):
        return [(t, r) for o in self.outcomes for t, r, _ in o.rollout_events]


def started(verdicts=None):
    rollout = Rollout(verdicts or Verdicts())
    rollout.new_model()
    rollout.reconcile()
    return rollout


def test_the_first_model_is_no_rollout_and_is_recorded_as_the_stable_one():
    rollout = Rollout(Verdicts())
    assert "rollout" not in rollout.bot["status"]
    assert rollout.bot["status"]["stableModel"] == {"url": "https://models.example.com/hello/model-1.0.0.tar.gz", "version": "1.0.0", "pollIntervalSeconds": 0}
    assert rollout.deployment("rasa-canary") is None
    assert rollout.routing()["canary"] == {"state": "None", "weight": 0, "rolloutId": ""}
    assert not rollout.outcomes[-1].rollout_active


def test_a_new_model_starts_a_canary_beside_the_untouched_stable_track():
    rollout = Rollout(Verdicts())
    stable_before = copy.deepcopy(rollout.deployment("rasa")["spec"])
    rollout.new_model()
    outcome = rollout.reconcile()
    assert rollout.rollout["phase"] == "Initializing" and rollout.rollout["canaryVersion"] == "2.0.0"
    assert rollout.deployment("rasa")["spec"] == stable_before  # still model 1.0.0
    assert rollout.version("rasa-canary") == "2.0.0" and rollout.deployment("rasa-canary")["spec"]["replicas"] == 1
    assert rollout.routing()["canary"] == {"state": "Progressing", "weight": 0, "rolloutId": "2.0.0"}
    assert ("Normal", "RolloutStarted") in rollout.events() and outcome.rollout_active
    assert rollout.bot["status"]["stableModel"]["version"] == "1.0.0"


def test_the_weight_waits_for_the_canary_to_be_ready():
    rollout = started()
    rollout.tick()
    assert rollout.rollout["phase"] == "Initializing" and rollout.routing()["canary"]["weight"] == 0
    rollout.make_ready("rasa-canary")
    rollout.tick()
    assert rollout.rollout["phase"] == "Progressing" and rollout.rollout["canaryWeight"] == 25
    assert rollout.routing()["canary"]["weight"] == 25


def test_a_good_canary_is_promoted_and_the_stable_track_takes_its_model():
    verdicts = Verdicts("pass")
    rollout = started(verdicts)
    rollout.make_ready("rasa-canary")
    rollout.tick()
    rollout.tick(30)  # the first analysis: pass, next step
    assert rollout.rollout["canaryWeight"] == 50 and verdicts.runs == 1
    rollout.tick(10)  # not due: no analysis
    assert verdicts.runs == 1
    rollout.tick(30)  # pass at the last step: promote
    assert rollout.rollout["phase"] == "Promoting" and rollout.version("rasa") == "2.0.0"
    rollout.make_ready("rasa")
    rollout.tick()
    assert rollout.rollout["phase"] == "Succeeded"
    assert rollout.bot["status"]["stableModel"]["version"] == "2.0.0"
    promoted = next(c for c in rollout.bot["status"]["conditions"] if c["type"] == "Promoted")
    assert promoted["status"] == "True" and promoted["reason"] == "Succeeded"
    assert rollout.routing()["canary"]["state"] == "Promoted" and rollout.routing()["canary"]["weight"] == 0
    # The canary drains, then scales to zero; no more ticks after that.
    assert rollout.deployment("rasa-canary")["spec"]["replicas"] == 1 and rollout.outcomes[-1].rollout_active
    rollout.tick(61)
    assert rollout.deployment("rasa-canary") is None and not rollout.outcomes[-1].rollout_active
    assert "rasa-canary" not in rollout.bot["status"]["components"]
    assert ("Normal", "RolloutSucceeded") in rollout.events()


def test_a_bad_canary_is_rolled_back_by_the_analysis_alone():
    rollout = started(Verdicts("fail"))
    rollout.make_ready("rasa-canary")
    rollout.tick()
    rollout.tick(30)
    assert rollout.rollout["failedChecks"] == 1 and rollout.rollout["phase"] == "Progressing"
    rollout.tick(30)
    assert rollout.rollout["phase"] == "Failed" and rollout.rollout["canaryWeight"] == 0
    assert rollout.version("rasa") == "1.0.0" and rollout.bot["status"]["stableModel"]["version"] == "1.0.0"
    assert rollout.routing()["canary"] == {"state": "RolledBack", "weight": 0, "rolloutId": "2.0.0"}
    failed = [m for o in rollout.outcomes for t, r, m in o.rollout_events if r == "RolloutFailed"]
    assert failed and "fallback_rate" in failed[0] and "0.6" in failed[0]
    assert rollout.rollout["lastAnalysis"]["fallback_rate"]["status"] == "fail"
    promoted = next(c for c in rollout.bot["status"]["conditions"] if c["type"] == "Promoted")
    assert promoted["status"] == "False" and promoted["reason"] == "RolledBack" and "fallback_rate" in promoted["message"]
    # Its conversations move at their next message; the pods go once the drain is over.
    assert rollout.deployment("rasa-canary")["spec"]["replicas"] == 1
    rollout.tick(61)
    assert rollout.deployment("rasa-canary") is None
    # The failed version is not retried on the next reconcile.
    rollout.tick(600)
    assert rollout.rollout["phase"] == "Failed"


def test_an_unknown_analysis_holds_the_weight_and_counts_no_failure():
    rollout = started(Verdicts("unknown"))
    rollout.make_ready("rasa-canary")
    rollout.tick()
    rollout.tick(30)
    assert rollout.rollout["canaryWeight"] == 25 and rollout.rollout["failedChecks"] == 0
    assert rollout.rollout["inconclusiveChecks"] == 1


def test_promote_and_abort_commands_from_the_annotation():
    rollout = started()
    rollout.make_ready("rasa-canary")
    rollout.tick()
    rollout.bot["metadata"].setdefault("annotations", {})[COMMAND_ANNOTATION] = "promote"
    outcome = rollout.tick()
    assert outcome.clear_rollout_command == "promote" and rollout.rollout["phase"] == "Promoting"
    assert COMMAND_ANNOTATION not in rollout.bot["metadata"]["annotations"]
    other = started()
    other.make_ready("rasa-canary")
    other.tick()
    other.bot["metadata"].setdefault("annotations", {})[COMMAND_ANNOTATION] = "abort"
    other.tick()
    assert other.rollout["phase"] == "Failed" and other.version("rasa") == "1.0.0"


def test_a_child_event_renders_the_tracks_as_the_last_reconcile_did():
    rollout = started()
    rollout.make_ready("rasa-canary")
    rollout.tick()
    live = copy.deepcopy(rollout.deployment("rasa"))
    live["spec"]["template"]["metadata"]["annotations"]["botfleet.io/model-version"] = "tampered"
    live["metadata"]["resourceVersion"] = "tampered-1"  # the API server's answer to any change
    rollout.kube.objects[("Deployment", "bots", "hello-rasa")] = live
    rollout.kube.calls.clear()
    reconciler.reconcile_child(rollout.kube, rollout.bot, "Deployment", "hello-rasa", copy.deepcopy(live))
    assert rollout.version("rasa") == "1.0.0"  # restored to the stable model, not spec.model
    canary = copy.deepcopy(rollout.deployment("rasa-canary"))
    outcome = reconciler.reconcile_child(rollout.kube, rollout.bot, "Deployment", "hello-rasa-canary", canary)
    assert outcome is not None and rollout.version("rasa-canary") == "2.0.0"
    # The child's path keeps the rollout's part of the status as the full reconcile wrote it.
    for key in ("rollout", "stableModel"):
        assert outcome.status[key] == rollout.bot["status"][key]
    assert [c for c in outcome.status["conditions"] if c["type"] == "Promoted"] == [c for c in rollout.bot["status"]["conditions"] if c["type"] == "Promoted"]


def test_rolling_update_takes_the_new_model_at_once():
    rollout = Rollout(Verdicts())
    rollout.bot["spec"]["rollout"] = {"strategy": "RollingUpdate"}
    rollout.new_model()
    rollout.reconcile()
    assert rollout.version("rasa") == "2.0.0" and rollout.deployment("rasa-canary") is None
    assert "rollout" not in rollout.bot["status"] and rollout.bot["status"]["stableModel"]["version"] == "2.0.0"


def test_a_lost_stable_model_falls_back_to_a_rolling_update_with_a_warning():
    rollout = Rollout(Verdicts())
    rollout.reconcile()  # the Deployments are ready: the status records the served version
    assert rollout.bot["status"]["currentModelVersion"] == "1.0.0"
    rollout.bot["status"]["stableModel"] = {"version": "1.0.0"}  # no URL: unusable
    rollout.new_model()
    rollout.reconcile()
    assert rollout.version("rasa") == "2.0.0"
    assert ("Warning", "RolloutSkipped") in rollout.events()


def test_a_canary_spec_only_the_parser_refuses_leaves_the_children_alone():
    rollout = started()
    rollout.make_ready("rasa-canary")
    rollout.tick()
    broken = copy.deepcopy(rollout.bot)
    broken["spec"]["rollout"]["canary"]["analysis"]["metrics"] = [{"name": "fallback_rate"}, {"name": "fallback_rate"}]
    live = copy.deepcopy(rollout.deployment("rasa"))
    live["metadata"]["resourceVersion"] = "changed-1"
    assert reconciler.reconcile_child(rollout.kube, broken, "Deployment", "hello-rasa", live) is None
    assert rollout.version("rasa") == "1.0.0"
    outcome = reconciler.reconcile(rollout.kube, broken, children=rollout.kube.children, analyse=rollout.verdicts, clock=rollout.clock)
    assert [p.reason for p in outcome.problems] == ["InvalidSpec"] and rollout.version("rasa") == "1.0.0"


def test_going_back_to_the_stable_version_cancels_and_is_not_a_promotion():
    rollout = started()
    rollout.make_ready("rasa-canary")
    rollout.tick()
    rollout.new_model({"url": "https://models.example.com/hello/model-1.0.0.tar.gz", "version": "1.0.0"})
    rollout.tick()
    promoted = next(c for c in rollout.bot["status"]["conditions"] if c["type"] == "Promoted")
    assert promoted["status"] == "False" and promoted["reason"] == "Cancelled"
    assert rollout.version("rasa") == "1.0.0" and rollout.deployment("rasa-canary") is None


def test_a_new_rollout_right_after_a_failed_one_waits_for_the_old_canary_to_drain():
    """A gateway still reading the failed rollout's routing would send that rollout's
    canary conversations to the canary Service, which would now serve the new model."""
    rollout = started(Verdicts("fail"))
    rollout.make_ready("rasa-canary")
    rollout.tick()
    rollout.tick(30)
    rollout.tick(30)
    assert rollout.rollout["phase"] == "Failed" and rollout.deployment("rasa-canary") is not None
    rollout.verdicts.status = "pass"
    rollout.new_model({"url": "https://models.example.com/hello/model-3.0.0.tar.gz", "version": "3.0.0"})
    rollout.tick(5)
    assert rollout.rollout["phase"] == "Initializing" and rollout.rollout["canaryVersion"] == "3.0.0"
    assert rollout.deployment("rasa-canary") is None  # the old canary's pods go, the new one's wait
    assert "canary" not in rollout.routing()["tracks"]
    rollout.tick(30)
    assert rollout.deployment("rasa-canary") is None and rollout.rollout["phase"] == "Initializing"
    rollout.tick(31)  # 60 s drain since the rollback
    assert rollout.version("rasa-canary") == "3.0.0"
    rollout.make_ready("rasa-canary")
    rollout.tick()
    assert rollout.rollout["phase"] == "Progressing" and rollout.version("rasa") == "1.0.0"
