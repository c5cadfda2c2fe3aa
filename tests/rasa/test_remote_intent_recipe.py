"""RemoteIntentClassifier inside a real Rasa model: config.botfleet.yml's NLU pipeline,
trained on a few examples and loaded by Rasa's Agent, takes its intents from the
service when it answers and from the in-process classifier when it does not."""

import asyncio
from pathlib import Path

import pytest
import yaml
from fake_model_server import FakeModelServer, rank
from rasa.core.agent import Agent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.model_training import train_nlu

from botfleet_rasa.components.remote_intent import URL_ENV, RemoteIntentClassifier

BOT = Path(__file__).resolve().parents[2] / "bots/demo"
NLU = """version: "3.1"
nlu:
- intent: greet
  examples: |
    - hello
    - hi there
    - hey
    - good morning
- intent: goodbye
  examples: |
    - bye
    - see you later
    - goodbye for now
- intent: book_flight
  examples: |
    - I want to fly to [Berlin](destination)
    - book a flight to [Paris](destination)
    - a flight to [Rome](destination) please
"""


def test_the_component_is_registered_as_an_untrainable_intent_classifier():
    registered = DefaultV1Recipe._from_registry("botfleet_rasa.components.remote_intent.RemoteIntentClassifier")
    assert registered.clazz is RemoteIntentClassifier
    assert registered.types == {DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER}
    assert registered.is_trainable is False


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A model with the production config's NLU pipeline (policies play no part here)."""
    work = tmp_path_factory.mktemp("remote-nlu")
    config = yaml.safe_load((BOT / "config.botfleet.yml").read_text())
    names = [c["name"] for c in config["pipeline"]]
    assert "botfleet_rasa.components.remote_intent.RemoteIntentClassifier" in names
    assert names.index("LogisticRegressionClassifier") < names.index(
        "botfleet_rasa.components.remote_intent.RemoteIntentClassifier"
    ) < names.index("FallbackClassifier")
    config.pop("policies")
    (work / "config.yml").write_text(yaml.safe_dump(config))
    (work / "nlu.yml").write_text(NLU)
    with pytest.MonkeyPatch.context() as env:
        # Rasa's training cache defaults to ./.rasa/cache: keep it out of the repository.
        env.setenv("RASA_CACHE_DIRECTORY", str(work / "cache"))
        path = train_nlu(str(work / "config.yml"), str(work / "nlu.yml"), str(work / "models"), fixed_model_name="nlu")
    assert path
    return path


def parse(model_path, text):
    # Loaded per test: the component reads BOTFLEET_NLU_URL when the model loads.
    async def run():
        agent = Agent.load(model_path)
        return await agent.parse_message(text)

    return asyncio.run(run())


def test_a_trained_model_takes_its_intents_from_the_service(model, monkeypatch):
    with FakeModelServer() as server:
        monkeypatch.setenv(URL_ENV, server.url)
        # "hello flight" would be greet in process; the service's keyword ranking says book_flight.
        parsed = parse(model, "hello, book a flight to Berlin")
        assert server.requests == 1
        assert server.bodies == [{"texts": ["hello, book a flight to berlin"]}]  # after the Preprocessor
    expected = rank("hello, book a flight to berlin")
    assert parsed["intent"] == {"name": "book_flight", "confidence": pytest.approx(expected["intent"]["confidence"])}
    assert parsed["intent_source"] == {"classifier": "remote", "outcome": "ok"}
    assert [r["name"] for r in parsed["intent_ranking"]] == ["book_flight", "greet", "goodbye", "order_status"]


def test_a_trained_model_falls_back_to_the_in_process_classifier(model, monkeypatch):
    with FakeModelServer() as server:
        server.mode, server.status = "status", 503
        monkeypatch.setenv(URL_ENV, server.url)
        parsed = parse(model, "see you later, bye")
        assert server.requests == 2  # the first attempt and one retry
    assert parsed["intent_source"] == {"classifier": "fallback", "outcome": "http_error"}
    # LogisticRegressionClassifier's ranking: only the trained intents, no service names.
    assert {r["name"] for r in parsed["intent_ranking"]} <= {"greet", "goodbye", "book_flight", "nlu_fallback"}
    assert "order_status" not in {r["name"] for r in parsed["intent_ranking"]}
    assert parsed["intent"]["name"] in {"goodbye", "nlu_fallback"}
