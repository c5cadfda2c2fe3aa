"""The botfleet database: schema, connection and demo catalog seed.

Plain SQL through SQLAlchemy Core so that one module serves PostgreSQL in production
and SQLite as the embedded fallback, on SQLAlchemy 1.4 (Rasa's pin) and 2.x alike.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import sqlalchemy as sa

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/botfleet"
DATABASE_URL_ENV = "BOTFLEET_DATABASE_URL"

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS products (
        sku TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        price_cents INTEGER NOT NULL,
        currency TEXT NOT NULL DEFAULT 'USD',
        in_stock BOOLEAN NOT NULL DEFAULT TRUE
    )""",
    """CREATE TABLE IF NOT EXISTS orders (
        order_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        carrier TEXT,
        eta TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS shipping_addresses (
        sender_id TEXT PRIMARY KEY,
        address TEXT NOT NULL,
        confirmed_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
    )""",
    """CREATE TABLE IF NOT EXISTS flight_bookings (
        reference TEXT PRIMARY KEY,
        sender_id TEXT NOT NULL,
        destination TEXT NOT NULL,
        travel_date TEXT NOT NULL,
        passengers INTEGER NOT NULL,
        created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
    )""",
    """CREATE TABLE IF NOT EXISTS handoffs (
        sender_id TEXT NOT NULL,
        requested_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
        reason TEXT NOT NULL,
        released_at TIMESTAMP,
        released_by TEXT,
        PRIMARY KEY (sender_id, requested_at)
    )""",
    """CREATE TABLE IF NOT EXISTS feedback (
        sender_id TEXT NOT NULL,
        rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
        created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
    )""",
    # Tracker events moved out of the active (Redis) tracker by the sliding window.
    """CREATE TABLE IF NOT EXISTS conversation_events (
        sender_id TEXT NOT NULL,
        event_hash TEXT NOT NULL,
        event_timestamp DOUBLE PRECISION NOT NULL,
        event_type TEXT NOT NULL,
        event_json TEXT NOT NULL,
        archived_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
        PRIMARY KEY (sender_id, event_hash)
    )""",
    """CREATE INDEX IF NOT EXISTS conversation_events_by_time
        ON conversation_events (sender_id, event_timestamp)""",
]

DEMO_PRODUCTS = [
    ("LAP-001", "laptop", 99900),
    ("PHN-001", "smartphone", 69900),
    ("AUD-001", "wireless headphones", 14999),
    ("TAB-001", "tablet", 44900),
    ("WAT-001", "smartwatch", 24900),
    ("MON-001", "4k monitor", 32900),
    ("KEY-001", "mechanical keyboard", 8999),
    ("MOU-001", "wireless mouse", 2999),
    ("CAM-001", "digital camera", 54900),
    ("SPK-001", "bluetooth speaker", 7999),
    ("ERD-001", "e-reader", 12999),
    ("GAM-001", "gaming console", 49900),
]
DEMO_ORDERS = [
    ("ORD-10042", "shipped", "DHL", "2 business days"),
    ("ORD-10043", "processing", None, "ships within 24 hours"),
    ("ORD-10044", "delivered", "UPS", None),
    ("ORD-20001", "cancelled", None, None),
]


def database_url(url: str | None = None) -> str:
    return url or os.environ.get(DATABASE_URL_ENV) or DEFAULT_DATABASE_URL


def make_engine(url: str | None = None, **kwargs: Any) -> sa.engine.Engine:
    """An engine that fails fast: a dead database must not stall a conversation turn."""
    url = database_url(url)
    if url.startswith("postgresql"):
        kwargs.setdefault("connect_args", {"connect_timeout": 3})
        kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **kwargs)


def ensure_schema(engine: sa.engine.Engine) -> None:
    with engine.begin() as connection:
        for statement in SCHEMA:
            connection.execute(sa.text(statement))


def seed_demo_data(engine: sa.engine.Engine) -> None:
    """Idempotently loads the demo catalog and orders."""
    with engine.begin() as connection:
        for sku, name, price in DEMO_PRODUCTS:
            connection.execute(
                sa.text(
                    "INSERT INTO products (sku, name, price_cents) VALUES (:sku, :name, :price)"
                    " ON CONFLICT (sku) DO UPDATE SET name = :name, price_cents = :price"
                ),
                {"sku": sku, "name": name, "price": price},
            )
        for order_id, status, carrier, eta in DEMO_ORDERS:
            connection.execute(
                sa.text(
                    "INSERT INTO orders (order_id, status, carrier, eta)"
                    " VALUES (:order_id, :status, :carrier, :eta)"
                    " ON CONFLICT (order_id) DO UPDATE SET status = :status,"
                    " carrier = :carrier, eta = :eta"
                ),
                {"order_id": order_id, "status": status, "carrier": carrier, "eta": eta},
            )


def create_database_if_missing(url: str) -> None:
    """Creates the PostgreSQL database named in the URL (no-op for SQLite)."""
    parsed = sa.engine.make_url(url)
    if not parsed.drivername.startswith("postgresql") or not parsed.database:
        return
    admin = make_engine(str(parsed.set(database="postgres")), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            exists = connection.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": parsed.database},
            ).first()
            if not exists:
                connection.execute(sa.text(f'CREATE DATABASE "{parsed.database}"'))
    finally:
        admin.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Create botfleet's schema and demo data.")
    parser.add_argument("--url", default=None, help=f"database URL (default: ${DATABASE_URL_ENV})")
    parser.add_argument("--seed", action="store_true", help="load the demo catalog and orders")
    args = parser.parse_args(argv)
    url = database_url(args.url)
    create_database_if_missing(url)
    engine = make_engine(url)
    ensure_schema(engine)
    if args.seed:
        seed_demo_data(engine)
    engine.dispose()
    print(f"schema ready at {sa.engine.make_url(url).render_as_string(hide_password=True)}")


if __name__ == "__main__":
    main()
