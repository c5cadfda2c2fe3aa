"""The operator's per-Bot series follow the Bot's status and vanish with the Bot."""

from prometheus_client import generate_latest

from botfleet_operator import metrics


def status(ready: str, version: str | None, rasa_ready: int) -> dict:
    result = {
        "conditions": [{"type": "Ready", "status": ready}],
        "components": {"rasa": {"desiredReplicas": 2, "readyReplicas": rasa_ready}},
    }
    if version:
        result["currentModelVersion"] = version
    return result


def exposition() -> str:
    return generate_latest().decode()


def test_series_follow_the_status_and_leave_nothing_stale():
    metrics.observe_bot("ns1", "alpha", status("False", "1.0.0", 1))
    text = exposition()
    assert 'botfleet_bot_ready{bot="alpha",bot_namespace="ns1"} 0.0' in text
    assert 'botfleet_bot_replicas_ready{bot="alpha",bot_namespace="ns1",component="rasa"} 1.0' in text
    assert 'botfleet_bot_replicas_desired{bot="alpha",bot_namespace="ns1",component="rasa"} 2.0' in text

    metrics.observe_bot("ns1", "alpha", status("True", "2.0.0", 2))
    text = exposition()
    assert 'botfleet_bot_ready{bot="alpha",bot_namespace="ns1"} 1.0' in text
    assert 'model_version="2.0.0"' in text
    assert 'model_version="1.0.0"' not in text  # the old version's series is gone

    metrics.forget_bot("ns1", "alpha")
    assert 'bot="alpha"' not in exposition()


def test_bots_are_kept_apart():
    metrics.observe_bot("ns1", "alpha", status("True", "1.0.0", 2))
    metrics.observe_bot("ns2", "alpha", status("False", None, 0))
    metrics.forget_bot("ns2", "alpha")
    text = exposition()
    assert 'botfleet_bot_ready{bot="alpha",bot_namespace="ns1"} 1.0' in text
    assert 'bot_namespace="ns2"' not in text
    metrics.forget_bot("ns1", "alpha")
