"""Events about a Bot, posted through the API: a full reference, so `kubectl describe
bot` lists them, and a message cut to what the API server keeps."""

from botfleet_operator.decisions import EVENT_MESSAGE_LIMIT, bot_reference, event_object

BOT = {"metadata": {"name": "hello", "namespace": "bots", "uid": "u-1", "resourceVersion": "7"}, "spec": {}}


def test_an_event_refers_to_the_bot_in_full():
    event = event_object(bot_reference(BOT), "Warning", "APIUnavailable", "no autoscaling/v2", "2026-12-01T00:00:00Z", "pod-a")
    assert event["involvedObject"] == {"apiVersion": "botfleet.io/v1alpha1", "kind": "Bot", "name": "hello", "namespace": "bots", "uid": "u-1"}
    assert event["metadata"] == {"generateName": "hello.", "namespace": "bots"}
    assert (event["type"], event["reason"], event["count"], event["reportingInstance"]) == ("Warning", "APIUnavailable", 1, "pod-a")
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2026-12-01T00:00:00Z"


def test_a_long_message_is_cut_to_the_limit():
    event = event_object(bot_reference(BOT), "Normal", "Created", "x" * 5000, "2026-12-01T00:00:00Z", "pod-a")
    assert len(event["message"]) == EVENT_MESSAGE_LIMIT and event["message"].endswith("…")
