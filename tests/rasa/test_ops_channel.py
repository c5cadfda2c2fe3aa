"""The ops channel's model gauges and its count of starts without a model."""

import asyncio
from types import SimpleNamespace

from prometheus_client import REGISTRY

from botfleet_rasa.channels import count_model_load, observe_model


class FakeAgent:
    def __init__(self, ready: bool, model_id: str = "model-123") -> None:
        self.ready, self.model_id = ready, model_id

    def is_ready(self) -> bool:
        return self.ready


def sample(name: str, labels: dict | None = None) -> float | None:
    return REGISTRY.get_sample_value(name, labels or {})


def test_gauges_follow_the_loaded_model():
    assert observe_model(FakeAgent(True, "model-a")) is True
    assert sample("botfleet_model_loaded") == 1
    assert sample("botfleet_model_info", {"model_id": "model-a"}) == 1
    observe_model(FakeAgent(True, "model-b"))  # replaced at runtime: one info series
    assert sample("botfleet_model_info", {"model_id": "model-a"}) is None
    assert sample("botfleet_model_info", {"model_id": "model-b"}) == 1
    assert observe_model(None) is False
    assert sample("botfleet_model_loaded") == 0
    assert sample("botfleet_model_info", {"model_id": "model-b"}) is None


def test_a_start_without_a_model_is_counted():
    before = sample("botfleet_model_load_failures_total") or 0
    asyncio.run(count_model_load(SimpleNamespace(ctx=SimpleNamespace(agent=FakeAgent(False))), None))
    assert sample("botfleet_model_load_failures_total") == before + 1
    asyncio.run(count_model_load(SimpleNamespace(ctx=SimpleNamespace(agent=FakeAgent(True))), None))
    assert sample("botfleet_model_load_failures_total") == before + 1
