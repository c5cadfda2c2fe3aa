"""The action server's data access. Blocking SQL runs in a worker thread so a slow
database never stalls the event loop that serves other conversations."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

import sqlalchemy as sa

from botfleet_common import db

T = TypeVar("T")


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price_cents: int
    currency: str
    in_stock: bool

    @property
    def price(self) -> str:
        return f"{self.price_cents / 100:,.2f} {self.currency}"


@dataclass(frozen=True)
class Order:
    order_id: str
    status: str
    carrier: Optional[str]
    eta: Optional[str]


@dataclass(frozen=True)
class Handoff:
    sender_id: str
    requested_at: str
    reason: str
    released_at: Optional[str]


class Repository:
    def __init__(self, engine: sa.engine.Engine) -> None:
        self.engine = engine

    @classmethod
    def from_url(cls, url: Optional[str] = None) -> Repository:
        return cls(db.make_engine(url))

    async def _run(self, work: Callable[[], T]) -> T:
        return await asyncio.to_thread(work)

    def _one(self, sql: str, **params: Any) -> Optional[Any]:
        with self.engine.connect() as connection:
            return connection.execute(sa.text(sql), params).first()

    def _write(self, sql: str, **params: Any) -> int:
        with self.engine.begin() as connection:
            return int(connection.execute(sa.text(sql), params).rowcount or 0)

    async def product_by_name(self, name: str) -> Optional[Product]:
        """Exact name first, then the closest catalog name containing the words."""

        def lookup() -> Optional[Product]:
            columns = "sku, name, price_cents, currency, in_stock"
            row = self._one(f"SELECT {columns} FROM products WHERE lower(name) = :n", n=name)
            if row is None:
                row = self._one(
                    f"SELECT {columns} FROM products WHERE lower(name) LIKE :p"
                    " OR :n LIKE '%' || lower(name) || '%' ORDER BY length(name) LIMIT 1",
                    p=f"%{name}%",
                    n=name,
                )
            return Product(*row) if row else None

        return await self._run(lookup)

    async def order(self, order_id: str) -> Optional[Order]:
        def lookup() -> Optional[Order]:
            row = self._one(
                "SELECT order_id, status, carrier, eta FROM orders WHERE order_id = :o",
                o=order_id,
            )
            return Order(*row) if row else None

        return await self._run(lookup)

    async def save_address(self, sender_id: str, address: str) -> None:
        await self._run(
            lambda: self._write(
                "INSERT INTO shipping_addresses (sender_id, address) VALUES (:s, :a)"
                " ON CONFLICT (sender_id) DO UPDATE SET address = :a,"
                " confirmed_at = CURRENT_TIMESTAMP",
                s=sender_id,
                a=address,
            )
        )

    async def book_flight(
        self, sender_id: str, destination: str, travel_date: str, passengers: int
    ) -> str:
        reference = "BF-" + secrets.token_hex(3).upper()
        await self._run(
            lambda: self._write(
                "INSERT INTO flight_bookings"
                " (reference, sender_id, destination, travel_date, passengers)"
                " VALUES (:r, :s, :d, :t, :p)",
                r=reference,
                s=sender_id,
                d=destination,
                t=travel_date,
                p=passengers,
            )
        )
        return reference

    async def request_handoff(self, sender_id: str, reason: str) -> None:
        await self._run(
            lambda: self._write(
                "INSERT INTO handoffs (sender_id, reason) VALUES (:s, :r)", s=sender_id, r=reason
            )
        )

    async def open_handoffs(self) -> list[Handoff]:
        def lookup() -> list[Handoff]:
            with self.engine.connect() as connection:
                rows = connection.execute(
                    sa.text(
                        "SELECT sender_id, requested_at, reason, released_at FROM handoffs"
                        " WHERE released_at IS NULL ORDER BY requested_at"
                    )
                )
                return [Handoff(r[0], str(r[1]), r[2], None) for r in rows]

        return await self._run(lookup)

    async def release_handoff(self, sender_id: str, agent: str) -> int:
        return await self._run(
            lambda: self._write(
                "UPDATE handoffs SET released_at = CURRENT_TIMESTAMP, released_by = :a"
                " WHERE sender_id = :s AND released_at IS NULL",
                s=sender_id,
                a=agent,
            )
        )

    async def store_feedback(self, sender_id: str, rating: int) -> None:
        await self._run(
            lambda: self._write(
                "INSERT INTO feedback (sender_id, rating) VALUES (:s, :r)", s=sender_id, r=rating
            )
        )
