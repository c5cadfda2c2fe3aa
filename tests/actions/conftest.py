import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest_db import DEAD_DATABASE_URL, create_test_database, drop_test_database  # noqa: E402

from botfleet_actions import actions  # noqa: E402
from botfleet_actions.repository import Repository  # noqa: E402
from botfleet_common import db  # noqa: E402


@pytest.fixture(scope="session")
def pg_url():
    url = create_test_database("botfleet_unit_actions")
    engine = db.make_engine(url)
    db.ensure_schema(engine)
    db.seed_demo_data(engine)
    engine.dispose()
    yield url
    drop_test_database(url)


@pytest.fixture
def repo(pg_url):
    repository = Repository.from_url(pg_url)
    actions.use_repository(repository)
    yield repository
    repository.engine.dispose()


@pytest.fixture
def dead_repo():
    repository = Repository.from_url(DEAD_DATABASE_URL)
    actions.use_repository(repository)
    yield repository
    repository.engine.dispose()
