"""What each Rasa track runs, from the rollout state: pure functions from a Bot and its
RolloutState to the chart values of charts/bot (`model` for the stable track, `canary`
for the canary track and the gateway's routing), and back from the rendered, observed
Deployments to decide()'s inputs.

The stable track's model must outlive the spec: once spec.model names the new model,
the old one is only in the Bot's status (status.stableModel, written on every
reconcile), so the stable track can keep serving it while the canary runs.
"""

from __future__ import annotations

from typing import Any, Mapping

from botfleet_operator.rollout.canary import RolloutState, canary_pods_wanted
from botfleet_operator.rollout.spec import CanarySpec

MODEL_VERSION_ANNOTATION = "botfleet.io/model-version"
# The gateway's words for a rollout's phase (services/gateway routing file, "canary.state").
GATEWAY_STATES = {
    "Initializing": "Progressing",
    "Progressing": "Progressing",
    "Paused": "Paused",
    "Promoting": "Promoting",
    "Succeeded": "Promoted",
    "Failed": "RolledBack",
}
MODEL_KEYS = ("url", "version", "nluModelTag", "nluModelUrl", "pollIntervalSeconds")


def model_of(spec_model: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of spec.model that make a track's model (what status.stableModel keeps)."""
    return {key: spec_model[key] for key in MODEL_KEYS if key in spec_model}


def recorded_stable_model(status: Mapping[str, Any] | None) -> dict[str, Any] | None:
    recorded = (status or {}).get("stableModel")
    return dict(recorded) if isinstance(recorded, Mapping) and recorded.get("version") and recorded.get("url") else None


def stable_version(status: Mapping[str, Any] | None) -> str | None:
    """The version the stable track served at the last reconcile."""
    recorded = recorded_stable_model(status)
    return str(recorded["version"]) if recorded else None


def stable_model(spec_model: Mapping[str, Any], state: RolloutState | None, recorded: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The model the stable track serves: spec.model, unless a rollout keeps the previous
    one (found in status.stableModel). None when the rollout's stable model is lost (a
    status without stableModel): the caller falls back to a plain rolling update."""
    if state is None or state.stable_track_version == spec_model.get("version"):
        return model_of(spec_model)
    if recorded and recorded.get("version") == state.stable_track_version:
        return model_of(recorded)
    return None


def canary_values(spec_model: Mapping[str, Any], state: RolloutState | None, canary: CanarySpec, now: float) -> dict[str, Any]:
    """charts/bot's `canary` values. The canary track exists while its model is the one
    spec.model names (a rollout withdrawn by going back to the stable version has none),
    while the rollout is active and for drainSeconds after it ended (the gateway moves
    its conversations to stable meanwhile); then it is removed."""
    if (state is None or state.canary_version != spec_model.get("version") or state.canary_version == state.stable_version
            or not canary_pods_wanted(state, canary, now)):  # withdrawn, or drained: pruned until the next rollout
        return {"enabled": False}
    return {
        "enabled": True,
        "model": model_of(spec_model),
        "replicas": canary.replicas,
        "weight": state.canary_weight if state.canary_active else 0,
        "state": GATEWAY_STATES[state.phase],
        "rolloutId": state.canary_version,
    }


def track_values(spec_model: Mapping[str, Any], state: RolloutState | None, canary: CanarySpec | None,
                 recorded: Mapping[str, Any] | None, now: float) -> dict[str, Any] | None:
    """Both tracks' chart values ({"model": ..., "canary": ...}), or None when the
    rollout cannot run as a canary (no canary spec, or the stable model is lost)."""
    if canary is None:
        return None
    stable = stable_model(spec_model, state, recorded)
    if stable is None:
        return None
    return {"model": stable, "canary": canary_values(spec_model, state, canary, now)}


def serves(deployment: Mapping[str, Any] | None, version: str) -> bool:
    """A Deployment has rolled out pods of `version`, and at least one is ready: its
    template names the version, the controller has seen that template, every replica
    is updated, and one is ready (a canary of one replica answers as soon as it is up)."""
    if not deployment:
        return False
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    annotations = ((spec.get("template") or {}).get("metadata") or {}).get("annotations") or {}
    if annotations.get(MODEL_VERSION_ANNOTATION) != version:
        return False
    generation = (deployment.get("metadata") or {}).get("generation")
    if generation is not None and status.get("observedGeneration", 0) < generation:
        return False
    wanted = spec.get("replicas", 1)
    return wanted > 0 and status.get("updatedReplicas", 0) >= wanted and status.get("readyReplicas", 0) >= 1 \
        and status.get("replicas", 0) <= status.get("updatedReplicas", 0)
