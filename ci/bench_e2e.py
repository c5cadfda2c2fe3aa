#!/usr/bin/env python3
"""Closed-loop load on a running bot over the REST channel.

Each virtual user plays the demo bot's multi-turn flows (greeting, price lookups,
order status, the flight form from start to booking, thanks and goodbye) as one
conversation after another, sending its next message only once the bot answered the
previous one. Prints JSON per concurrency level: msgs/s, latency p50/p95/p99, errors,
and the share of replies that were the expected ones.

    python ci/bench_e2e.py --url http://127.0.0.1:5005 [http://127.0.0.1:5006 ...] --concurrency 1 16 64 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
import uuid

import aiohttp

# The same percentile as `botfleet nlu eval` (ci/cli, installed in the dev venv).
from botfleet_cli.nlu_metrics import percentile

# (message, a fragment the reply must contain): the flows of tests/e2e/test_flows.py.
FLOWS: list[list[tuple[str, str]]] = [
    [("hello", "support assistant"), ("How much does the laptop cost?", "999.00"), ("thanks a lot", "welcome")],
    [("hi", "support assistant"), ("where is my order ORD-10042?", "DHL"), ("bye", "")],
    [
        ("I want to fly to Berlin", "What date"),
        ("next Friday", "How many passengers"),
        ("2", "Berlin"),
        ("yes", "Booked"),
    ],
    [("how much does it cost?", "Which product"), ("the tablet", "449.00"), ("are you a bot?", "bot")],
    [("I want to track my order", "order number"), ("ORD-10043", "processing"), ("thanks a lot", "welcome")],
]


async def user(session: aiohttp.ClientSession, url: str, deadline: float, offset: int, stats: dict[str, list[float] | int]) -> None:
    flows = itertools.cycle(FLOWS[offset % len(FLOWS):] + FLOWS[: offset % len(FLOWS)])
    while time.perf_counter() < deadline:
        sender = f"bench-{uuid.uuid4().hex[:12]}"
        for message, expected in next(flows):
            if time.perf_counter() >= deadline:
                return
            started = time.perf_counter()
            try:
                async with session.post(url, json={"sender": sender, "message": message}) as response:
                    replies = await response.json() if response.status == 200 else None
            except (aiohttp.ClientError, asyncio.TimeoutError, json.JSONDecodeError):
                replies = None
            elapsed = time.perf_counter() - started
            if replies is None:
                stats["errors"] += 1  # type: ignore[operator]
                break  # the conversation is lost: start a new one
            stats["latencies"].append(elapsed)  # type: ignore[union-attr]
            text = " ".join(str(r.get("text") or "") for r in replies)
            if expected.lower() in text.lower():
                stats["expected"] += 1  # type: ignore[operator]


async def level(urls: list[str], concurrency: int, seconds: float, warmup: float) -> dict[str, object]:
    # Several URLs are replicas of one bot: each conversation sticks to one of them, the
    # way a Kubernetes Service spreads client connections over pods.
    webhooks = [url.rstrip("/") + "/webhooks/rest/webhook" for url in urls]
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=concurrency + 4)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        if warmup:
            scratch: dict[str, list[float] | int] = {"latencies": [], "errors": 0, "expected": 0}
            end = time.perf_counter() + warmup
            await asyncio.gather(*(user(session, webhooks[i % len(webhooks)], end, i, scratch) for i in range(concurrency)))
        stats: dict[str, list[float] | int] = {"latencies": [], "errors": 0, "expected": 0}
        started = time.perf_counter()
        deadline = started + seconds
        await asyncio.gather(*(user(session, webhooks[i % len(webhooks)], deadline, i, stats) for i in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies: list[float] = stats["latencies"]  # type: ignore[assignment]
    return {
        "concurrency": concurrency,
        "messages": len(latencies),
        "msgs_per_s": round(len(latencies) / elapsed, 2),
        "p50_ms": round(1000 * percentile(latencies, 50), 1),
        "p95_ms": round(1000 * percentile(latencies, 95), 1),
        "p99_ms": round(1000 * percentile(latencies, 99), 1),
        "errors": stats["errors"],
        "expected_replies": round(int(stats["expected"]) / len(latencies), 3) if latencies else 0.0,  # type: ignore[call-overload]
    }


async def run(urls: list[str], levels: list[int], seconds: float, warmup: float) -> list[dict[str, object]]:
    return [await level(urls, concurrency, seconds, warmup) for concurrency in levels]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", nargs="+", default=["http://127.0.0.1:5005"], help="the bot, or several replicas of it")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run(args.url, args.concurrency, args.seconds, args.warmup)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
