import pytest

from botfleet_operator.main import kopf_arguments

STANDALONE = ["run", "--standalone", "-m", "botfleet_operator.handlers", "--liveness=http://0.0.0.0:8080/healthz", "--log-format=json"]


def test_whole_cluster_by_default_and_on_request():
    assert kopf_arguments([]) == [*STANDALONE, "--all-namespaces"]
    assert kopf_arguments(["-A", "--standalone"]) == [*STANDALONE, "--all-namespaces"]


def test_listed_namespaces():
    assert kopf_arguments(["-n", "bots", "--namespace", "bots-*"]) == [*STANDALONE, "--namespace=bots", "--namespace=bots-*"]


def test_scope_flags_exclude_each_other():
    with pytest.raises(SystemExit):
        kopf_arguments(["-A", "-n", "bots"])


def test_peering_with_a_given_or_a_random_priority():
    command = kopf_arguments(["-A", "--peering", "botfleet-operator", "--priority", "7"])
    assert command[:3] == ["run", "--peering=botfleet-operator", "--priority=7"] and "--standalone" not in command
    drawn = {kopf_arguments(["--peering=p"])[2] for _ in range(10)}
    assert len(drawn) > 1 and all(int(p.removeprefix("--priority=")) >= 1 for p in drawn)


def test_peering_and_standalone_exclude_each_other():
    with pytest.raises(SystemExit):
        kopf_arguments(["--peering", "p", "--standalone"])
    with pytest.raises(SystemExit):
        kopf_arguments(["--priority", "3"])  # a priority means nothing standalone


def test_liveness_address():
    assert "--liveness=http://127.0.0.1:9090/healthz" in kopf_arguments(["--liveness", "http://127.0.0.1:9090/healthz"])
