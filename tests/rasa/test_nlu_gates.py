from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message

from botfleet_rasa import metrics
from botfleet_rasa.components.language_gate import LanguageGate
from botfleet_rasa.components.nlu_metrics import NLUMetrics, fallback_reason
from botfleet_rasa.components.preprocessor import LANGUAGE

RANKING = [{"name": "greet", "confidence": 0.9}, {"name": "goodbye", "confidence": 0.1}]


def message(language_supported=True, intent="greet"):
    m = Message(data={TEXT: "x"})
    m.set(INTENT, {"name": intent, "confidence": 0.9})
    m.set(INTENT_RANKING_KEY, list(RANKING))
    m.set(LANGUAGE, {"code": "en" if language_supported else "es", "supported": language_supported})
    return m


def test_unsupported_language_becomes_fallback():
    foreign, english = message(False), message(True)
    LanguageGate(LanguageGate.get_default_config()).process([foreign, english])
    assert foreign.get(INTENT) == {"name": "nlu_fallback", "confidence": 1.0}
    assert foreign.get(INTENT_RANKING_KEY)[0]["name"] == "nlu_fallback"
    assert english.get(INTENT)["name"] == "greet"


def test_fallback_reasons():
    fallback = {"name": "nlu_fallback", "confidence": 0.65}
    assert fallback_reason({"name": "greet"}, RANKING, {}, "nlu_fallback") is None
    assert fallback_reason(fallback, [fallback, {"name": "greet", "confidence": 0.4}], {}, "nlu_fallback") == "low_confidence"
    assert fallback_reason(fallback, [fallback, {"name": "greet", "confidence": 0.7}], {}, "nlu_fallback") == "ambiguous"
    assert fallback_reason(fallback, [], {"supported": False}, "nlu_fallback") == "unsupported_language"


def test_metrics_count_intents_confidence_and_fallbacks():
    before = metrics.FALLBACKS.labels("unsupported_language")._value.get()
    intents_before = metrics.INTENTS.labels("greet")._value.get()
    foreign = message(False)
    LanguageGate(LanguageGate.get_default_config()).process([foreign])
    NLUMetrics(NLUMetrics.get_default_config()).process([foreign, message(True)])
    assert metrics.FALLBACKS.labels("unsupported_language")._value.get() == before + 1
    assert metrics.INTENTS.labels("greet")._value.get() == intents_before + 1
