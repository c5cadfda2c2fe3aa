"""`python -m botfleet_gateway --host 0.0.0.0 --port 8080`."""

from __future__ import annotations

import argparse
import logging
import os

import uvicorn

from botfleet_common.jsonlog import configure
from botfleet_gateway.app import create_app
from botfleet_gateway.settings import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="botfleet-gateway", description="The botfleet webhook gateway.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    configure("gateway", args.log_level)
    # DEBUG is for the gateway's own lines. httpx logs every upstream URL at INFO, query
    # strings (verify tokens) included; httpcore and redis narrate each socket at DEBUG.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for noisy in ("httpcore", "redis", "websockets"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger().level))
    app = create_app(Settings.from_env())
    # log_config=None: uvicorn's loggers propagate to the root's ECS JSON handler. No
    # access log: the gateway logs each request itself (at DEBUG, without query strings).
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        ws="websockets-sansio",
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )
