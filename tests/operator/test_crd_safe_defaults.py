"""Admission of the Bot CRD's safe defaults: where a Bot's data goes must be said, names
must fit every child, and the NLU model's URL is checked like the model's."""

from __future__ import annotations

import copy

import pytest
from conftest import ROOT, load

from botfleet_operator.crd import validate_bot, with_defaults

MINIMAL = load(ROOT / "k8s/examples/minimal-bot.yaml")


def bot(name: str = "hello", **stores):
    body = copy.deepcopy(MINIMAL)
    body["metadata"]["name"] = name
    body["spec"]["stores"] = stores
    return body


def test_a_bot_that_names_no_database_is_refused_with_the_field():
    assert validate_bot(bot()) == ["spec.stores.analytics: Required value"]
    without_stores = copy.deepcopy(MINIMAL)
    del without_stores["spec"]["stores"]
    assert validate_bot(without_stores) == ["spec.stores: Required value"]
    assert "spec.stores.analytics: must have at least 1 properties" in validate_bot(bot(analytics={}))


def test_ephemeral_must_be_said_and_cannot_be_false():
    assert validate_bot(bot(analytics={"ephemeral": True})) == []
    errors = validate_bot(bot(analytics={"ephemeral": False}))
    assert any(e.startswith("spec.stores.analytics.ephemeral: Unsupported value") for e in errors), errors


def test_a_database_or_ephemeral_but_not_both():
    database = {"name": "db", "key": "url"}
    assert validate_bot(bot(analytics={"databaseUrlFrom": database})) == []
    errors = validate_bot(bot(analytics={"databaseUrlFrom": database, "ephemeral": True}))
    assert errors and all(e.startswith("spec.stores.analytics") for e in errors), errors
    assert "exactly one of databaseUrlFrom or ephemeral" in " ".join(errors)


@pytest.mark.parametrize("name", ["a" * 40, "support-bot-1"])
def test_names_that_fit_every_child_are_admitted(name):
    assert validate_bot(bot(name, analytics={"ephemeral": True})) == []


@pytest.mark.parametrize("name", ["a" * 41, "1bot", "Bot"])
def test_names_that_cannot_fit_a_child_are_refused_naming_the_field(name):
    errors = validate_bot(bot(name, analytics={"ephemeral": True}))
    assert errors and all(e.startswith("metadata.name") for e in errors), errors


def test_no_default_key_prefix_or_queue_is_shared_by_every_bot():
    stores = with_defaults(bot(analytics={"ephemeral": True}))["spec"]["stores"]
    assert "keyPrefix" not in stores["tracker"] and "queue" not in stores["eventBroker"]


def test_the_nlu_model_url_is_http():
    body = bot(analytics={"ephemeral": True})
    body["spec"]["model"]["nluModelUrl"] = "ftp://models/nlu.bentomodel"
    assert [e for e in validate_bot(body) if e.startswith("spec.model.nluModelUrl")]
