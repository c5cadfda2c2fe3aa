from rasa.engine.graph import ExecutionContext
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.constants import ENTITIES, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from botfleet_rasa.components.preprocessor import LANGUAGE, PII_REDACTIONS, Preprocessor, detect_language


def make(tmp_path, **overrides):
    config = {**Preprocessor.get_default_config(), **overrides}
    return Preprocessor.create(config, LocalModelStorage(tmp_path), Resource("pre"), ExecutionContext(None))


def test_messages_are_normalised_and_redacted(tmp_path):
    message = Message(data={TEXT: "  Ｍｙ CARD is 4111 1111 1111 1111 😀  mail Me@Example.com "})
    make(tmp_path).process([message])
    assert message.get(TEXT) == "my card is [card] grinning face mail [email]"
    assert message.get(PII_REDACTIONS) == {"card": 1, "email": 1}
    assert message.as_dict(only_output_properties=True)[TEXT] == message.get(TEXT)


def test_language_is_tagged(tmp_path):
    spanish = Message(data={TEXT: "¿Cuánto cuesta el portátil?"})
    english = Message(data={TEXT: "How much does the laptop cost?"})
    short = Message(data={TEXT: "Berlin"})
    make(tmp_path).process([spanish, english, short])
    assert spanish.get(LANGUAGE)["code"] == "es" and spanish.get(LANGUAGE)["supported"] is False
    assert english.get(LANGUAGE)["supported"] is True
    assert short.get(LANGUAGE) == {"code": None, "confidence": 0.0, "supported": True, "supported_languages": ["en"]}


def test_supported_languages_are_configurable(tmp_path):
    german = Message(data={TEXT: "Ich möchte nach Berlin fliegen"})
    make(tmp_path, supported_languages=["en", "de"]).process([german])
    assert german.get(LANGUAGE)["code"] == "de" and german.get(LANGUAGE)["supported"] is True


def test_training_examples_keep_entity_spans(tmp_path):
    text = "Ship  to 😀 [456 Oak Ave]"
    start = text.index("456")
    example = Message(data={TEXT: text, ENTITIES: [{"start": start, "end": start + 11, "value": "456 Oak Ave", "entity": "address"}]})
    synonym = Message(data={TEXT: "change the DATE", ENTITIES: [{"start": 11, "end": 15, "value": "travel_date", "entity": "flight_field"}]})
    make(tmp_path).process_training_data(TrainingData([example, synonym]))
    entity = example.get(ENTITIES)[0]
    assert example.get(TEXT)[entity["start"] : entity["end"]] == "456 oak ave" == entity["value"]
    fixed = synonym.get(ENTITIES)[0]
    assert synonym.get(TEXT)[fixed["start"] : fixed["end"]] == "date" and fixed["value"] == "travel_date"


def test_ordinary_english_chat_is_never_flagged():
    candidates = tuple(Preprocessor.get_default_config()["candidate_languages"])
    for text in ["i want to fly to berlin", "ship to 456 oak ave, apt 10", "are you a bot", "yes please book it", "next friday", "where is my order ord-10042", "talk to a person"]:
        code, _ = detect_language(text, candidates, 2, 0.7)
        assert code in (None, "en"), text
