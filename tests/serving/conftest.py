"""Fixtures for the model-serving tests: a throwaway BentoML store, a tiny trained model and
the real service (``bentoml serve`` in a subprocess on a free loopback port)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

# Set before anything imports bentoml: the store lives in a temporary BENTOML_HOME.
_HOME = tempfile.mkdtemp(prefix="botfleet-serving-tests-")
os.environ["BENTOML_HOME"] = _HOME
os.environ["BENTOML_DO_NOT_TRACK"] = "True"
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
from serving_support import MODEL_TAG, TINY_NLU  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _cleanup_home() -> Iterator[None]:
    yield
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def bentoml_home() -> str:
    return _HOME


@pytest.fixture(scope="session")
def tiny_nlu_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nlu") / "nlu.yml"
    path.write_text(TINY_NLU)
    return path


@pytest.fixture(scope="session")
def trained_tag(tiny_nlu_file: Path) -> str:
    """The tiny model, trained through the console script's entry point into the temp store."""
    from botfleet_serving.train import main

    args = [
        "--nlu",
        str(tiny_nlu_file),
        "--tag",
        MODEL_TAG,
        "--seed",
        "7",
        "--epochs",
        "1",
        "--max-steps",
        "6",
    ]
    args += ["--batch-size", "8"]
    assert main(args) == 0
    return MODEL_TAG


@pytest.fixture(scope="session")
def service_url(
    trained_tag: str, bentoml_home: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    from botfleet_serving.bench import serve

    log = tmp_path_factory.mktemp("serve") / "bentoml.log"
    try:
        with serve(
            trained_tag, bentoml_home, log_path=str(log), env={"BOTFLEET_MAX_LATENCY_MS": "10000"}
        ) as url:
            yield url
    except Exception:
        print(log.read_text(errors="replace")[-5000:])
        raise
