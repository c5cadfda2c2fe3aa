"""Keeps the bot silent while a human agent owns the conversation.

Rasa has no built-in handoff. action_handoff sets the `handoff_active` slot; while it is
true this policy predicts action_listen after every user message with the highest
priority, so no rule, form or ML policy answers in the agent's place. An agent's release
(botfleet's agent API) sets the slot back to false.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from rasa.core.policies.policy import Policy, PolicyPrediction
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.shared.core.constants import ACTION_LISTEN_NAME
from rasa.shared.core.domain import Domain
from rasa.shared.core.generator import TrackerWithCachedStates
from rasa.shared.core.trackers import DialogueStateTracker

from botfleet_rasa import metrics


def should_stay_silent(tracker: DialogueStateTracker, slot: str) -> bool:
    """True right after a user message in a conversation a human agent has taken over."""
    # Rasa's convention: the latest action is action_listen exactly when a user message
    # (and its slot extraction) is waiting for the bot's next action.
    return bool(tracker.get_slot(slot)) and tracker.latest_action_name == ACTION_LISTEN_NAME


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.POLICY_WITHOUT_END_TO_END_SUPPORT, is_trainable=True
)
class HandoffPolicy(Policy):
    @staticmethod
    def get_default_config() -> Dict[str, Any]:
        # Above RulePolicy (6) so that rules cannot answer for the agent.
        return {"priority": 7, "slot": "handoff_active"}

    def train(
        self, training_trackers: List[TrackerWithCachedStates], domain: Domain, **kwargs: Any
    ) -> Resource:
        # Nothing to learn; persist nothing but the resource so that load() finds it.
        with self._model_storage.write_to(self._resource):
            pass
        return self._resource

    def predict_action_probabilities(
        self,
        tracker: DialogueStateTracker,
        domain: Domain,
        rule_only_data: Optional[Dict[str, Any]] = None,
        **kwargs: Any,
    ) -> PolicyPrediction:
        probabilities = self._default_predictions(domain)
        if should_stay_silent(tracker, self.config["slot"]):
            probabilities[domain.index_for_action(ACTION_LISTEN_NAME)] = 1.0
            metrics.HANDOFF_SUPPRESSED.inc()
        return self._prediction(probabilities)
