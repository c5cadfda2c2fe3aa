import sys
import uuid
from pathlib import Path

import pytest
from rasa.shared.core.domain import Domain

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest_db import DEAD_DATABASE_URL, create_test_database, drop_test_database  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BOT = ROOT / "bots/demo"


@pytest.fixture(scope="session")
def domain():
    return Domain.load(str(BOT / "domain.yml"))


@pytest.fixture(scope="session")
def pg_url():
    url = create_test_database("botfleet_unit_rasa")
    yield url
    drop_test_database(url)


@pytest.fixture
def dead_database_url():
    return DEAD_DATABASE_URL


@pytest.fixture
def redis_prefix():
    import redis

    prefix = f"unit{uuid.uuid4().hex[:8]}"
    yield prefix
    client = redis.StrictRedis(host="127.0.0.1", port=6379, db=0)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
