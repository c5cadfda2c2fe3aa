"""The first component of every botfleet NLU pipeline.

It normalises text (NFKC, emoji to words, case, whitespace), redacts PII so that no later
component, log line or store sees it, and detects the message's language.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Dict, List, Optional

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import (
    ENTITIES,
    ENTITY_ATTRIBUTE_END,
    ENTITY_ATTRIBUTE_START,
    ENTITY_ATTRIBUTE_VALUE,
    TEXT,
)
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from botfleet_rasa import metrics
from botfleet_rasa.textnorm import normalize

LANGUAGE = "language"
PII_REDACTIONS = "pii_redactions"
_WORD = re.compile(r"[^\W\d_]{2,}")


@functools.lru_cache(maxsize=4)
def _detector(candidates: tuple[str, ...]) -> Any:
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    codes = [getattr(IsoCode639_1, code.upper()) for code in candidates]
    return (
        LanguageDetectorBuilder.from_iso_codes_639_1(*codes)
        .with_preloaded_language_models()
        .build()
    )


def detect_language(
    text: str, candidates: tuple[str, ...], min_words: int, min_confidence: float
) -> tuple[Optional[str], float]:
    """The ISO 639-1 code and its confidence, or (None, 0.0) when the text is too short
    or no language is clearly ahead: short chat turns ("ok", "Berlin") are ambiguous."""
    words = _WORD.findall(text.replace("[card]", "").replace("[email]", "").replace("[phone]", ""))
    if len(words) < min_words:
        return None, 0.0
    ranked = _detector(candidates).compute_language_confidence_values(" ".join(words))
    if not ranked or ranked[0].value < min_confidence:
        return None, ranked[0].value if ranked else 0.0
    return ranked[0].language.iso_code_639_1.name.lower(), ranked[0].value


@DefaultV1Recipe.register(
    [DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER], is_trainable=False
)
class Preprocessor(GraphComponent):
    """Normalises, redacts and language-tags messages before tokenization."""

    @staticmethod
    def get_default_config() -> Dict[str, Any]:
        return {
            "nfkc": True,
            "emoji_to_text": True,
            "lowercase": True,
            "fold_whitespace": True,
            # PII kinds to redact: card (Luhn-checked), email, phone.
            "redact": ["card", "email", "phone"],
            "supported_languages": ["en"],
            # Languages the detector chooses among; more languages, more memory.
            "candidate_languages": [
                "en", "es", "fr", "de", "it", "pt", "nl", "pl",
                "ru", "tr", "sv", "ja", "zh", "ar", "hi", "ko",
            ],
            "language_min_words": 2,
            "language_min_confidence": 0.7,
        }

    def __init__(self, config: Dict[str, Any]) -> None:
        self.config = config
        self._candidates = tuple(config["candidate_languages"])
        unknown = set(config["supported_languages"]) - set(self._candidates)
        if unknown:
            raise ValueError(
                f"supported_languages {sorted(unknown)} must also be candidate_languages"
            )

    @classmethod
    def create(
        cls,
        config: Dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> Preprocessor:
        component = cls(config)
        # Load language models now, not on the first user's message.
        _detector(component._candidates)
        return component

    def _normalize(self, text: str) -> Any:
        return normalize(
            text,
            nfkc=self.config["nfkc"],
            emoji_to_text=self.config["emoji_to_text"],
            redact_kinds=tuple(self.config["redact"]),
            lowercase=self.config["lowercase"],
            fold_whitespace=self.config["fold_whitespace"],
        )

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        """Applies the same normalisation to training examples, keeping entity spans."""
        for example in training_data.training_examples:
            original = example.get(TEXT)
            if not original:
                continue
            result = self._normalize(original)
            example.set(TEXT, result.text)
            for entity in example.get(ENTITIES) or []:
                old_start, old_end = entity[ENTITY_ATTRIBUTE_START], entity[ENTITY_ATTRIBUTE_END]
                start, end = result.map_span(old_start, old_end)
                if entity.get(ENTITY_ATTRIBUTE_VALUE) == original[old_start:old_end]:
                    entity[ENTITY_ATTRIBUTE_VALUE] = result.text[start:end]
                entity[ENTITY_ATTRIBUTE_START], entity[ENTITY_ATTRIBUTE_END] = start, end
        return training_data

    def process(self, messages: List[Message]) -> List[Message]:
        for message in messages:
            text = message.get(TEXT)
            if not text:
                continue
            result = self._normalize(text)
            message.set(TEXT, result.text, add_to_output=True)
            for kind, count in result.redactions.items():
                metrics.PII_REDACTIONS.labels(kind).inc(count)
            message.set(PII_REDACTIONS, result.redactions, add_to_output=True)
            code, confidence = detect_language(
                result.text,
                self._candidates,
                self.config["language_min_words"],
                self.config["language_min_confidence"],
            )
            metrics.LANGUAGES.labels(code or "undetermined").inc()
            message.set(
                LANGUAGE,
                {
                    "code": code,
                    "confidence": round(confidence, 3),
                    "supported": code is None or code in self.config["supported_languages"],
                    "supported_languages": list(self.config["supported_languages"]),
                },
                add_to_output=True,
            )
        return messages
