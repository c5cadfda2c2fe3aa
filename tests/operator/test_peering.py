"""The resync loop pauses exactly when kopf's peering would pause the operator."""

from datetime import datetime, timedelta, timezone

from botfleet_operator.peering import live_rivals, paused

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def seen(seconds_ago, priority, lifetime=60):
    return {"priority": priority, "lifetime": lifetime, "lastseen": (NOW - timedelta(seconds=seconds_ago)).isoformat()}


def test_the_highest_priority_alive_works_the_others_wait():
    peering = {"status": {"pod-a": seen(5, 700), "pod-b": seen(5, 300)}}
    assert not paused([peering], "pod-a", 700, NOW)
    assert paused([peering], "pod-b", 300, NOW)
    assert live_rivals(peering, "pod-b", 300, NOW) == ["pod-a"]


def test_a_dead_peer_does_not_count():
    peering = {"status": {"pod-a": seen(61, 700), "pod-b": seen(5, 300)}}
    assert not paused([peering], "pod-b", 300, NOW)
    # kopf removes a cleanly stopped peer's record (lifetime 0).
    assert not paused([{"status": {"pod-a": seen(0, 700, lifetime=0)}}], "pod-b", 300, NOW)


def test_same_priority_pauses_both_as_kopf_does():
    peering = {"status": {"pod-a": seen(1, 500), "pod-b": seen(1, 500)}}
    assert paused([peering], "pod-a", 500, NOW) and paused([peering], "pod-b", 500, NOW)


def test_without_an_identity_ourselves_are_told_by_priority():
    peering = {"status": {"someone@host/123/abc": seen(1, 500), "other": seen(1, 200)}}
    assert not paused([peering], None, 500, NOW)
    assert paused([peering], None, 200, NOW)


def test_a_missing_peering_object_pauses():
    # With --peering kopf waits for its peering object; so does the resync.
    assert paused([None], "pod-a", 1, NOW)
    assert not paused([{"status": {}}, {}], "pod-a", 1, NOW)
    assert paused([{"status": {}}, {"status": {"x": seen(1, 9)}}], "pod-a", 1, NOW)  # any watched namespace
    assert live_rivals({"status": {"x": {"priority": 9}}}, "a", 1, NOW) == ["x"]  # no lastseen: just seen
