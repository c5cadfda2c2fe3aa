"""The pure routing functions, alone."""

from __future__ import annotations

import pytest
from botfleet_gateway.routing import (
    Assignment,
    CanaryConfig,
    Routing,
    RoutingError,
    TrackTarget,
    choose_track,
    parse_routing,
    route,
    stable_only,
)

STABLE = TrackTarget("http://demo-rasa:5005", "v1")
CANARY = TrackTarget("http://demo-rasa-canary:5005", "v2")


def routing(state: str = "Progressing", weight: int = 50, rollout_id: str | None = "v2", canary: bool = True) -> Routing:
    return Routing(bot="demo", stable=STABLE, canary_target=CANARY if canary else None, canary=CanaryConfig(state, weight, rollout_id))


def test_choose_track_is_deterministic_and_uses_the_rollout_id():
    keys = [f"user-{i}" for i in range(200)]
    first = [choose_track(k, "v2", 50) for k in keys]
    assert first == [choose_track(k, "v2", 50) for k in keys]
    # Another rollout splits the population differently (not the same users every time).
    assert first != [choose_track(k, "v3", 50) for k in keys]


def test_choose_track_weight_bounds():
    keys = [f"k{i}" for i in range(1000)]
    assert {choose_track(k, "v2", 0) for k in keys} == {"stable"}
    assert {choose_track(k, "v2", 100) for k in keys} == {"canary"}


@pytest.mark.parametrize("weight", [1, 5, 10, 25, 50, 90])
def test_choose_track_canary_share_matches_the_weight(weight):
    keys = [f"conversation-{i}" for i in range(10_000)]
    share = sum(choose_track(k, "rollout-42", weight) == "canary" for k in keys) / len(keys) * 100
    # Binomial standard deviation at 10,000 draws is at most 0.5 points; 2 points is 4 sigma.
    assert abs(share - weight) < 2, share


def test_raising_the_weight_only_adds_canary_conversations():
    """Monotone in the weight: a key on the canary at 10 % is still there at 20 %."""
    keys = [f"c{i}" for i in range(2000)]
    at_10 = {k for k in keys if choose_track(k, "v2", 10) == "canary"}
    at_20 = {k for k in keys if choose_track(k, "v2", 20) == "canary"}
    assert at_10 < at_20


def test_new_conversation_without_active_canary_is_stable_and_recorded():
    for config in (stable_only("http://x:5005"), routing(state="None"), routing(state="RolledBack"), routing(canary=False)):
        decision = route(None, config, "anyone")
        assert decision.track == "stable"
        assert decision.record.track == "stable"
        assert decision.new_conversation


def test_new_conversation_during_a_rollout_follows_choose_track():
    config = routing(weight=30)
    for key in (f"u{i}" for i in range(100)):
        decision = route(None, config, key)
        assert decision.track == choose_track(key, "v2", 30)
        assert decision.record == Assignment(decision.track, "v2")
        assert decision.moved_from is None


@pytest.mark.parametrize("state", ["Progressing", "Paused", "Promoting"])
def test_canary_conversation_stays_while_the_rollout_is_active(state):
    assignment = Assignment("canary", "v2")
    for weight in (0, 1, 50, 100):
        decision = route(assignment, routing(state=state, weight=weight), "u")
        assert decision.track == "canary"
        assert decision.record == assignment
        assert not decision.new_conversation


def test_raising_the_weight_never_moves_an_assigned_conversation():
    keys = [f"user{i}" for i in range(500)]
    assignments = {k: route(None, routing(weight=10), k).record for k in keys}
    for weight in (20, 50, 99, 100):
        for key, assignment in assignments.items():
            assert route(assignment, routing(weight=weight), key).track == assignment.track


def test_stable_conversation_never_moves_to_canary():
    assignment = Assignment("stable", None)
    for state in ("Progressing", "Paused", "Promoting", "Promoted", "RolledBack", "None"):
        decision = route(assignment, routing(state=state, weight=100), "u")
        assert decision.track == "stable"
        assert decision.moved_from is None


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (routing(state="RolledBack"), "rollback"),
        (routing(state="Aborted"), "rollback"),
        (routing(state="Promoted"), "promoted"),
        (routing(state="Progressing", rollout_id="v3"), "new_rollout"),
        (routing(state="None"), "canary_inactive"),
        (routing(state="Progressing", canary=False), "canary_inactive"),
    ],
)
def test_canary_conversation_moves_to_stable_when_the_canary_is_gone(config, reason):
    decision = route(Assignment("canary", "v2"), config, "u")
    assert decision.track == "stable"
    assert decision.moved_from == "canary"
    assert decision.move_reason == reason
    assert decision.record.track == "stable"
    # Recorded as stable, it stays there from then on, even when a canary comes back.
    assert route(decision.record, routing(weight=100, rollout_id="v4"), "u").track == "stable"


def test_url_for_each_track():
    config = routing()
    assert config.url_for("stable") == STABLE.url
    assert config.url_for("canary") == CANARY.url
    assert config.effective_weight == 50
    assert routing(state="RolledBack").effective_weight == 0


def test_parse_routing_accepts_the_documented_schema():
    parsed = parse_routing(
        {
            "bot": "demo",
            "tracks": {"stable": {"url": "http://demo-rasa:5005/", "model": "v1"}, "canary": {"url": "http://demo-rasa-canary:5005", "model": "v2"}},
            "canary": {"state": "Progressing", "weight": 20, "rolloutId": "v2"},
        }
    )
    assert parsed.bot == "demo"
    assert parsed.stable == TrackTarget("http://demo-rasa:5005", "v1")
    assert parsed.canary_active and parsed.canary.weight == 20 and parsed.canary.rollout_id == "v2"
    stable_only_doc = parse_routing({"bot": "demo", "tracks": {"stable": {"url": "http://a:5005"}}})
    assert not stable_only_doc.canary_active and stable_only_doc.canary.state == "None"


@pytest.mark.parametrize(
    "document",
    [
        [],
        "x",
        {"bot": "demo"},
        {"bot": "demo", "tracks": {}},
        {"bot": "demo", "tracks": {"stable": {"url": "ftp://x"}}},
        {"bot": "demo", "tracks": {"stable": {"url": "http://x"}, "shadow": {"url": "http://y"}}},
        {"bot": "demo", "tracks": {"stable": {"url": "http://x"}}, "canary": {"state": "Sideways"}},
        {"bot": "demo", "tracks": {"stable": {"url": "http://x"}}, "canary": {"state": "Progressing", "weight": 101}},
        {"bot": "demo", "tracks": {"stable": {"url": "http://x"}}, "canary": {"state": "Progressing", "weight": True}},
        {"bot": "demo", "tracks": {"stable": {"url": "http://x"}}, "canary": {"state": "Progressing", "weight": 5.5}},
        {"bot": "demo", "tracks": {"stable": {"url": "http://x"}}, "canary": {"rolloutId": 7}},
        {"bot": 3, "tracks": {"stable": {"url": "http://x"}}},
    ],
)
def test_parse_routing_rejects_invalid_documents(document):
    with pytest.raises(RoutingError):
        parse_routing(document)
