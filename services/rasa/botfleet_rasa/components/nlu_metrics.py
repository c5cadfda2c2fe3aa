"""Records what the NLU decided: intents, confidence distribution and fallbacks."""

from __future__ import annotations

from typing import Any, Dict, List

from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.shared.nlu.constants import INTENT, INTENT_NAME_KEY, INTENT_RANKING_KEY, PREDICTED_CONFIDENCE_KEY
from rasa.shared.nlu.training_data.message import Message

from botfleet_rasa import metrics
from botfleet_rasa.components.fallback_aware import FallbackAwareComponent
from botfleet_rasa.components.preprocessor import LANGUAGE


def fallback_reason(
    intent: Dict[str, Any], ranking: List[Dict[str, Any]], language: Dict[str, Any], fallback_intent: str
) -> str | None:
    """Why a message fell back, or None. FallbackClassifier reports its threshold as the
    fallback's confidence, so a real intent at or above it means the top two were too close."""
    if intent.get(INTENT_NAME_KEY) != fallback_intent:
        return None
    if language and not language.get("supported", True):
        return "unsupported_language"
    real = [r for r in ranking if r.get(INTENT_NAME_KEY) != fallback_intent]
    if real and real[0].get(PREDICTED_CONFIDENCE_KEY, 0.0) >= intent.get(PREDICTED_CONFIDENCE_KEY, 1.0):
        return "ambiguous"
    return "low_confidence"


@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=False
)
class NLUMetrics(FallbackAwareComponent):
    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            intent = message.get(INTENT) or {}
            if not intent.get(INTENT_NAME_KEY):
                continue
            ranking = message.get(INTENT_RANKING_KEY) or []
            metrics.INTENTS.labels(intent[INTENT_NAME_KEY]).inc()
            real = [r for r in ranking if r.get(INTENT_NAME_KEY) != self.fallback_intent]
            if real:
                metrics.INTENT_CONFIDENCE.observe(real[0].get(PREDICTED_CONFIDENCE_KEY, 0.0))
            reason = fallback_reason(intent, ranking, message.get(LANGUAGE) or {}, self.fallback_intent)
            if reason:
                metrics.FALLBACKS.labels(reason).inc()
        return messages
