import pytest

from botfleet_operator.main import kopf_arguments

BASE = ["run", "--standalone", "-m", "botfleet_operator.handlers", "--liveness=http://0.0.0.0:8080/healthz", "--log-format=json"]


def test_whole_cluster_by_default_and_on_request():
    assert kopf_arguments([]) == [*BASE, "--all-namespaces"]
    assert kopf_arguments(["-A"]) == [*BASE, "--all-namespaces"]


def test_listed_namespaces():
    assert kopf_arguments(["-n", "bots", "--namespace", "bots-*"]) == [*BASE, "--namespace=bots", "--namespace=bots-*"]


def test_scope_flags_exclude_each_other():
    with pytest.raises(SystemExit):
        kopf_arguments(["-A", "-n", "bots"])
