"""botfleet-agent: work handed-off conversations from the command line.

  botfleet-agent handoffs              list open handoffs
  botfleet-agent release SENDER_ID     hand a conversation back to the bot
  botfleet-agent archive SENDER_ID     print a conversation's archived events

Settings: BOTFLEET_AGENT_API (http://127.0.0.1:5055), BOTFLEET_AGENT_TOKEN, BOTFLEET_AGENT_NAME.
Prints JSON; exits 1 when the API refuses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Optional


def call(method: str, path: str, body: Optional[dict[str, Any]] = None) -> tuple[int, Any]:
    base = os.environ.get("BOTFLEET_AGENT_API", "http://127.0.0.1:5055").rstrip("/")
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "Authorization": f"Bearer {os.environ.get('BOTFLEET_AGENT_TOKEN', '')}",
            "Content-Type": "application/json",
        },
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="botfleet-agent", description="Work handed-off conversations.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("handoffs", help="list open handoffs")
    release = commands.add_parser("release", help="hand a conversation back to the bot")
    release.add_argument("sender_id")
    history = commands.add_parser("archive", help="print archived events of a conversation")
    history.add_argument("sender_id")
    args = parser.parse_args(argv)
    if args.command == "handoffs":
        status, body = call("GET", "/agent/handoffs")
    elif args.command == "release":
        agent = os.environ.get("BOTFLEET_AGENT_NAME", os.environ.get("USER", "agent"))
        status, body = call("POST", f"/agent/handoffs/{urllib.parse.quote(args.sender_id, safe='')}/release", {"agent": agent})
    else:
        status, body = call("GET", f"/agent/conversations/{urllib.parse.quote(args.sender_id, safe='')}/archive")
    print(json.dumps(body, indent=2))
    return 0 if status < 400 else 1


if __name__ == "__main__":
    sys.exit(main())
