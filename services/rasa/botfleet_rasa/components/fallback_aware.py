"""Base of the stateless components that run after the classifiers and need to know
which intent means "fallback"."""

from __future__ import annotations

from typing import Any, Dict, List

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.training_data.message import Message


class FallbackAwareComponent(GraphComponent):
    @staticmethod
    def get_default_config() -> Dict[str, Any]:
        return {"fallback_intent": "nlu_fallback"}

    def __init__(self, config: Dict[str, Any]) -> None:
        self.fallback_intent: str = config["fallback_intent"]

    @classmethod
    def create(
        cls,
        config: Dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> GraphComponent:
        return cls(config)

    def process(self, messages: List[Message]) -> List[Message]:
        raise NotImplementedError
