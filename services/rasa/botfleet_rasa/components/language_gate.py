"""Routes messages in unsupported languages to the fallback.

It runs after the intent classifiers: a classifier trained on English can be confident
about a Spanish sentence for the wrong reasons, so the language decides first.
"""

from __future__ import annotations

from typing import List

from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.shared.nlu.constants import INTENT, INTENT_NAME_KEY, INTENT_RANKING_KEY, PREDICTED_CONFIDENCE_KEY
from rasa.shared.nlu.training_data.message import Message

from botfleet_rasa.components.fallback_aware import FallbackAwareComponent
from botfleet_rasa.components.preprocessor import LANGUAGE


@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=False
)
class LanguageGate(FallbackAwareComponent):
    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            language = message.get(LANGUAGE) or {}
            if language.get("supported", True):
                continue
            fallback = {INTENT_NAME_KEY: self.fallback_intent, PREDICTED_CONFIDENCE_KEY: 1.0}
            ranking = [
                r for r in message.get(INTENT_RANKING_KEY) or []
                if r.get(INTENT_NAME_KEY) != self.fallback_intent
            ]
            message.set(INTENT, fallback, add_to_output=True)
            message.set(INTENT_RANKING_KEY, [fallback, *ranking], add_to_output=True)
        return messages
