import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "k8s/examples").glob("*.yaml"))
# The oldest and newest Kubernetes versions botfleet supports.
SUPPORTED_KUBERNETES = ("1.30.0", "1.37.0")


def load(path):
    return yaml.safe_load(Path(path).read_text())


@pytest.fixture
def minimal_bot():
    return copy.deepcopy(load(ROOT / "k8s/examples/minimal-bot.yaml"))
