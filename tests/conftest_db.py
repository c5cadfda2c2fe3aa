"""Shared by unit-test conftests: a fresh PostgreSQL database per test session."""

from __future__ import annotations

import os
import uuid

import sqlalchemy as sa

from botfleet_common import db

ADMIN_URL = os.environ.get("BOTFLEET_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# A port nothing listens on: a database outage that fails fast.
DEAD_DATABASE_URL = "postgresql://postgres@127.0.0.1:1/botfleet"


def create_test_database(prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    url = str(sa.engine.make_url(ADMIN_URL).set(database=name))
    db.create_database_if_missing(url)
    return url


def drop_test_database(url: str) -> None:
    name = sa.engine.make_url(url).database
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
