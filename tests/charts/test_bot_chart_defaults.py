"""charts/bot's safe defaults: every component sized, Rasa's API always behind a
token, each bot's own Redis keys and event queue, no data on an emptyDir unless asked
for, and the NLU model delivered to model serving the way the values say."""

from __future__ import annotations

import helm_python
import pytest
import yaml
from chart_support import objects, of_kind

MINIMAL = {"model": {"url": "https://models.example.com/m.tar.gz", "version": "1"}, "stores": {"analytics": {"ephemeral": True}}}


def deployment(objs, component):
    return next(o for o in of_kind(objs, "Deployment") if o["metadata"]["labels"]["app.kubernetes.io/component"] == component)


def container(objs, component):
    return deployment(objs, component)["spec"]["template"]["spec"]["containers"][0]


def env(objs, component):
    return {e["name"]: e for e in container(objs, component).get("env", [])}


def config(objs, name="concierge"):
    configmap = next(o for o in of_kind(objs, "ConfigMap") if o["metadata"]["name"] == f"{name}-rasa")
    return yaml.safe_load(configmap["data"]["endpoints.yml"])


@pytest.mark.parametrize("component", ["rasa", "actions", "model-serving"])
def test_every_component_has_requests_and_a_memory_limit_by_default(component):
    resources = container(objects("bot", MINIMAL), component)["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert "memory" in resources["limits"]


def test_a_bots_own_resources_merge_over_the_defaults():
    values = {**MINIMAL, "rasa": {"resources": {"limits": {"memory": "4Gi"}}}}
    resources = container(objects("bot", values), "rasa")["resources"]
    assert resources["limits"]["memory"] == "4Gi" and resources["requests"]["cpu"] == "250m"


def test_rasa_always_requires_a_token_and_helm_generates_one():
    objs = objects("bot", MINIMAL)
    assert '--auth-token="$RASA_TOKEN"' in container(objs, "rasa")["args"][0]
    for component in ("rasa", "actions"):
        reference = env(objs, component)["RASA_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert reference == {"name": "concierge-api-token", "key": "token"}
    token = next(o for o in of_kind(objs, "Secret") if o["metadata"]["name"] == "concierge-api-token")
    assert len(token["data"]["token"]) >= 48
    assert token["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_a_named_token_secret_is_used_and_none_is_generated():
    objs = objects("bot", {**MINIMAL, "secrets": {"apiTokenFrom": {"name": "mine", "key": "t"}}})
    assert env(objs, "rasa")["RASA_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "mine", "key": "t"}
    assert of_kind(objs, "Secret") == []


def test_each_bot_has_its_own_redis_keys_and_event_queue():
    broker = {"eventBroker": {"type": "pika", "host": "rabbitmq", "credentialsFrom": {"secretName": "mq"}}}
    values = {**MINIMAL, "stores": {**MINIMAL["stores"], **broker}}
    prefixes, queues = set(), set()
    for name, namespace in (("support", "bots"), ("support", "staging"), ("sup-port", "bots"), ("sales", "bots")):
        endpoints = config(objects("bot", values, name=name, namespace=namespace), name)
        prefix = endpoints["tracker_store"]["key_prefix"]
        assert prefix.isalnum(), prefix  # Rasa silently ignores any other prefix
        assert endpoints["lock_store"]["key_prefix"] == prefix
        prefixes.add(prefix)
        queues.add(endpoints["event_broker"]["queues"][0])
    assert len(prefixes) == len(queues) == 4  # "sup-port" and "support" differ in their keys too
    assert "botfleet.bots.support.events" in queues


def test_an_explicit_key_prefix_and_queue_are_kept():
    stores = {"tracker": {"keyPrefix": "shop"}, "analytics": {"ephemeral": True},
              "eventBroker": {"type": "pika", "host": "mq", "queue": "q1", "credentialsFrom": {"secretName": "mq"}}}
    endpoints = config(objects("bot", {**MINIMAL, "stores": stores}))
    assert endpoints["tracker_store"]["key_prefix"] == "shop" and endpoints["event_broker"]["queues"] == ["q1"]


def test_a_release_without_a_database_is_refused_unless_ephemeral():
    with helm_python.Chart.load("charts/bot") as chart, pytest.raises(helm_python.errors.HelmRenderError, match="stores.analytics"):
        chart.render({"model": MINIMAL["model"]}, name="x", namespace="bots")


def test_ephemeral_storage_is_sqlite_on_the_pods_emptydir():
    objs = objects("bot", MINIMAL)
    assert env(objs, "rasa")["BOTFLEET_DATABASE_URL"]["value"] == "sqlite:////tmp/archive.sqlite3"
    assert env(objs, "actions")["BOTFLEET_DATABASE_URL"]["value"] == "sqlite:////tmp/botfleet.sqlite3"


def test_a_database_secret_feeds_both_pods():
    values = {**MINIMAL, "stores": {"analytics": {"databaseUrlFrom": {"name": "db", "key": "url"}}}}
    objs = objects("bot", values)
    for component in ("rasa", "actions"):
        assert env(objs, component)["BOTFLEET_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "db", "key": "url"}


def test_rasa_is_pointed_at_its_model_server_only_when_there_is_one():
    assert env(objects("bot", MINIMAL), "rasa")["BOTFLEET_NLU_URL"]["value"] == "http://concierge-model-serving:3000"
    assert "BOTFLEET_NLU_URL" not in env(objects("bot", {**MINIMAL, "modelServing": {"enabled": False}}), "rasa")


def test_the_nlu_model_is_fetched_into_a_writable_store():
    values = {**MINIMAL, "model": {**MINIMAL["model"], "nluModelUrl": "http://models/nlu.bentomodel", "nluModelTag": "nlu:1"}}
    objs = objects("bot", values)
    pod = deployment(objs, "model-serving")["spec"]["template"]["spec"]
    fetch = pod["initContainers"][0]
    assert {"name": "MODEL_URL", "value": "http://models/nlu.bentomodel"} in fetch["env"]
    assert fetch["securityContext"]["readOnlyRootFilesystem"] is True
    variables = env(objs, "model-serving")
    assert variables["BOTFLEET_NLU_MODEL_ARCHIVE"]["value"] == "/models/nlu.bentomodel"
    assert variables["BENTOML_HOME"]["value"].startswith("/tmp/")
    assert variables["BOTFLEET_NLU_MODEL_TAG"]["value"] == "nlu:1"
    assert {"name": "models", "emptyDir": {}} in pod["volumes"]


def test_without_a_model_url_nothing_is_fetched_and_the_images_tag_applies():
    objs = objects("bot", MINIMAL)
    assert "initContainers" not in deployment(objs, "model-serving")["spec"]["template"]["spec"]
    assert "BOTFLEET_NLU_MODEL_TAG" not in env(objs, "model-serving")


def test_the_action_server_passes_arguments_to_its_images_entrypoint():
    actions = container(objects("bot", MINIMAL), "actions")
    assert "command" not in actions and actions["args"] == ["--port", "5055"]
