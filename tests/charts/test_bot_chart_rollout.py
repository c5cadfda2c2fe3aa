"""charts/bot during a model rollout: the gateway in front of Rasa, and the canary track
beside the stable one, as the operator renders them from a Bot's rollout status."""

import json

from chart_support import CHARTS, load_values, objects, of_kind

BASE = load_values(CHARTS["bot"] / "ci/minimal-values.yaml")
NEW_MODEL = {"url": "https://models.example.com/hello/model-2.0.0.tar.gz", "version": "2.0.0"}


def with_canary(weight=20, state="Progressing", **model):
    return {**BASE, "canary": {"enabled": True, "model": {**NEW_MODEL, **model}, "replicas": 1, "weight": weight, "state": state}}


def by_name(items, kind):
    return {o["metadata"]["name"]: o for o in of_kind(items, kind)}


def env(deployment):
    return {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def routing(items):
    return json.loads(by_name(items, "ConfigMap")["concierge-routing"]["data"]["routing.json"])


def matches(selector, labels):
    return selector.items() <= labels.items()


def test_without_a_rollout_one_track_and_the_gateway_routes_everything_to_stable():
    items = objects("bot", BASE)
    deployments = by_name(items, "Deployment")
    assert "concierge-rasa-canary" not in deployments and "concierge-gateway" in deployments
    assert routing(items) == {
        "bot": "concierge",
        "tracks": {"stable": {"url": "http://concierge-rasa:5005", "model": "1.0.0"}},
        "canary": {"state": "None", "weight": 0, "rolloutId": ""},
    }
    assert env(deployments["concierge-rasa"])["BOTFLEET_TRACK"] == "stable"


def test_the_canary_track_runs_the_new_model_beside_the_stable_one():
    before = by_name(objects("bot", BASE), "Deployment")["concierge-rasa"]
    items = objects("bot", with_canary())
    deployments = by_name(items, "Deployment")
    stable, canary = deployments["concierge-rasa"], deployments["concierge-rasa-canary"]
    # A Deployment's selector is immutable: starting a rollout must not touch the stable one's.
    assert stable["spec"]["selector"] == before["spec"]["selector"]
    assert stable["spec"]["template"] == before["spec"]["template"]
    assert env(stable)["BOTFLEET_MODEL_URL"] == BASE["model"]["url"] and env(stable)["BOTFLEET_MODEL_VERSION"] == "1.0.0"
    assert env(canary)["BOTFLEET_MODEL_URL"] == NEW_MODEL["url"] and env(canary)["BOTFLEET_MODEL_VERSION"] == "2.0.0"
    assert env(canary)["BOTFLEET_TRACK"] == "canary" and canary["spec"]["replicas"] == 1
    canary_pods = canary["spec"]["template"]["metadata"]["labels"]
    stable_pods = stable["spec"]["template"]["metadata"]["labels"]
    # Neither Deployment nor Service of one track selects the other track's pods.
    assert not matches(stable["spec"]["selector"]["matchLabels"], canary_pods)
    assert not matches(canary["spec"]["selector"]["matchLabels"], stable_pods)
    services = by_name(items, "Service")
    assert not matches(services["concierge-rasa"]["spec"]["selector"], canary_pods)
    assert matches(services["concierge-rasa-canary"]["spec"]["selector"], canary_pods)
    # Both tracks share one Rasa ConfigMap (the stores): the model URL comes from the env.
    (config,) = [c for c in of_kind(items, "ConfigMap") if c["metadata"]["name"] == "concierge-rasa"]
    assert "url: ${BOTFLEET_MODEL_URL}" in config["data"]["endpoints.yml"]
    volumes = {v["name"]: v for v in canary["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "concierge-rasa"


def test_canary_metrics_carry_the_track_and_the_stable_component():
    services = by_name(objects("bot", with_canary()), "Service")
    labels = services["concierge-rasa-canary"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "rasa" and labels["botfleet.io/track"] == "canary"
    assert services["concierge-rasa"]["metadata"]["labels"]["botfleet.io/track"] == "stable"


def test_the_routing_config_carries_weight_state_and_both_tracks():
    assert routing(objects("bot", with_canary(weight=30))) == {
        "bot": "concierge",
        "tracks": {
            "stable": {"url": "http://concierge-rasa:5005", "model": "1.0.0"},
            "canary": {"url": "http://concierge-rasa-canary:5005", "model": "2.0.0"},
        },
        "canary": {"state": "Progressing", "weight": 30, "rolloutId": "2.0.0"},
    }


def test_a_weight_change_does_not_restart_the_gateway_or_any_rasa_pod():
    low, high = (objects("bot", with_canary(weight=w)) for w in (10, 50))
    for name in ("concierge-gateway", "concierge-rasa", "concierge-rasa-canary"):
        assert by_name(low, "Deployment")[name] == by_name(high, "Deployment")[name], name
    assert routing(low)["canary"]["weight"] == 10 and routing(high)["canary"]["weight"] == 50


def test_the_canary_gets_its_own_model_serving_only_when_the_nlu_model_changes():
    same = by_name(objects("bot", with_canary()), "Deployment")
    assert "concierge-model-serving-canary" not in same
    assert env(same["concierge-rasa-canary"])["BOTFLEET_NLU_URL"] == "http://concierge-model-serving:3000"
    items = objects("bot", with_canary(nluModelTag="nlu:2.0.0"))
    changed = by_name(items, "Deployment")
    assert env(changed["concierge-model-serving-canary"])["BOTFLEET_NLU_MODEL_TAG"] == "nlu:2.0.0"
    assert env(changed["concierge-rasa-canary"])["BOTFLEET_NLU_URL"] == "http://concierge-model-serving-canary:3000"
    assert env(changed["concierge-rasa"])["BOTFLEET_NLU_URL"] == "http://concierge-model-serving:3000"
    assert "concierge-model-serving-canary" in by_name(items, "Service")
    policy = by_name(items, "NetworkPolicy")["concierge-model-serving-canary"]
    allowed = [p["podSelector"]["matchLabels"] for p in policy["spec"]["ingress"][0]["from"] if "namespaceSelector" not in p]
    assert {"app.kubernetes.io/instance": "concierge", "app.kubernetes.io/component": "rasa-canary"} in allowed


def test_the_canary_rasa_may_call_the_action_server():
    policy = by_name(objects("bot", with_canary()), "NetworkPolicy")["concierge-actions"]
    allowed = [p["podSelector"]["matchLabels"].get("app.kubernetes.io/component") for p in policy["spec"]["ingress"][0]["from"]]
    assert {"rasa", "rasa-canary"} <= set(allowed)


def test_the_ingress_sends_channels_to_the_gateway_and_without_it_to_rasa():
    values = {**BASE, "ingress": {"enabled": True, "host": "bot.example.com"}, "channels": [{"type": "rest"}, {"type": "socketio"}]}
    for gateway, backend in ((True, "concierge-gateway"), (False, "concierge-rasa")):
        (ingress,) = of_kind(objects("bot", {**values, "gateway": {"enabled": gateway}}), "Ingress")
        paths = ingress["spec"]["rules"][0]["http"]["paths"]
        assert {p["path"]: p["backend"]["service"]["name"] for p in paths} == {"/webhooks": backend, "/socket.io": backend}


def test_the_gateway_shares_the_bots_redis_under_the_bots_key_prefix():
    items = objects("bot", {**BASE, "stores": {**BASE["stores"], "tracker": {"type": "redis", "host": "redis.shared", "port": 6380, "db": 2}}})
    deployments = by_name(items, "Deployment")
    gateway = env(deployments["concierge-gateway"])
    assert gateway["BOTFLEET_REDIS_URL"] == "redis://redis.shared:6380/2"
    (config,) = [c for c in of_kind(items, "ConfigMap") if c["metadata"]["name"] == "concierge-rasa"]
    assert f'key_prefix: "{gateway["BOTFLEET_KEY_PREFIX"]}"' in config["data"]["endpoints.yml"]
    pod = deployments["concierge-gateway"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_a_password_protected_redis_reaches_the_gateway_through_a_secret():
    tracker = {"type": "redis", "host": "redis", "port": 6379, "db": 0, "passwordFrom": {"name": "redis", "key": "password"}}
    gateway = by_name(objects("bot", {**BASE, "stores": {**BASE["stores"], "tracker": tracker}}), "Deployment")["concierge-gateway"]
    container = gateway["spec"]["template"]["spec"]["containers"][0]
    names = [e["name"] for e in container["env"]]
    # $(REDIS_PASSWORD) expands only from a variable defined earlier in the list.
    assert names.index("REDIS_PASSWORD") < names.index("BOTFLEET_REDIS_URL")
    assert env(gateway)["BOTFLEET_REDIS_URL"] == "redis://:$(REDIS_PASSWORD)@redis:6379/0"
