#!/usr/bin/env python3
"""Conversation regression suite: record real conversations, replay them turn by turn.

  ci/regression.py record SENDER_ID NAME   export a conversation from the running bot
  ci/regression.py replay [FILE...]        replay recordings against the running bot

Recordings are anonymised: the sender id is dropped, user text comes from the tracker
(already PII-redacted by the store), and volatile values (dates, booking references) are
replaced by placeholders on both sides of the comparison.
Settings: RASA_URL (http://127.0.0.1:5005), RASA_TOKEN (or the stack's token file).
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = ROOT / "bots/demo/tests/regression"
VOLATILE = [
    (re.compile(r"\b\d{4}-\d{2}-\d{2}\b"), "<DATE>"),
    (re.compile(r"\bBF-[0-9A-F]{6}\b"), "<BOOKING_REF>"),
]


def normalize(text: str) -> str:
    for pattern, placeholder in VOLATILE:
        text = pattern.sub(placeholder, text)
    return text


def bot_turn(message: dict[str, Any]) -> dict[str, Any]:
    turn: dict[str, Any] = {"text": normalize(message.get("text") or "")}
    if message.get("buttons"):
        turn["buttons"] = [b["title"] for b in message["buttons"]]
    return turn


def rasa_url() -> str:
    return os.environ.get("RASA_URL", "http://127.0.0.1:5005").rstrip("/")


def rasa_token() -> str:
    token_file = Path(os.environ.get("BOTFLEET_STACK_DIR", ROOT / ".run/stack")) / "rasa_token"
    return os.environ.get("RASA_TOKEN") or token_file.read_text().strip()


def record(sender: str, name: str) -> Path:
    tracker = requests.get(
        f"{rasa_url()}/conversations/{sender}/tracker",
        # ALL: a restart in the conversation must not hide the turns before it.
        params={"token": rasa_token(), "include_events": "ALL"},
        timeout=30,
    ).json()
    turns: list[dict[str, Any]] = []
    for event in tracker["events"]:
        if event["event"] == "user":
            turns.append({"user": event["text"], "bot": []})
        elif event["event"] == "bot" and turns:
            data = event.get("data") or {}
            turns[-1]["bot"].append(bot_turn({"text": event.get("text"), "buttons": data.get("buttons")}))
    if not turns:
        raise SystemExit(f"error: conversation {sender} has no user turns to record")
    path = RECORDINGS / f"{name}.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"conversation": name, "recorded": date.today().isoformat(), "turns": turns}
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return path


def replay(path: Path, url: str | None = None) -> list[str]:
    """Replays one recording; returns the differences (empty when it matches)."""
    recording = yaml.safe_load(path.read_text())
    sender = f"regression-{uuid.uuid4().hex[:10]}"
    differences = []
    for number, turn in enumerate(recording["turns"], start=1):
        response = requests.post(
            f"{url or rasa_url()}/webhooks/rest/webhook", json={"sender": sender, "message": turn["user"]}, timeout=60
        )
        response.raise_for_status()
        actual = [bot_turn(m) for m in response.json()]
        if actual != turn["bot"]:
            differences.append(f"{path.name} turn {number} ({turn['user']!r}): expected {turn['bot']}, got {actual}")
            break  # later turns depend on this one
    return differences


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[1] == "record":
        print(record(argv[2], argv[3]))
        return 0
    if len(argv) >= 2 and argv[1] == "replay":
        files = [Path(p) for p in argv[2:]] or sorted(RECORDINGS.glob("*.yml"))
        differences = [d for f in files for d in replay(f)]
        print("\n".join(differences) or f"{len(files)} conversations replayed without differences")
        return 1 if differences else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
