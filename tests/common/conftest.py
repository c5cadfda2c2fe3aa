import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from conftest_db import create_test_database, drop_test_database  # noqa: E402

from botfleet_common import db  # noqa: E402


@pytest.fixture(scope="session")
def pg_url():
    url = create_test_database("botfleet_unit_common")
    yield url
    drop_test_database(url)


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request, pg_url, tmp_path):
    url = pg_url if request.param == "postgresql" else f"sqlite:///{tmp_path / 'test.sqlite3'}"
    engine = db.make_engine(url)
    db.ensure_schema(engine)
    with engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM conversation_events"))
    yield engine
    engine.dispose()
