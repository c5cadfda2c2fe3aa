"""Two Rasa replicas ("pods") serving one conversation through the shared Redis
tracker and lock stores."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from conftest import stack

REPLICA_PORT = "15006"


@pytest.fixture(scope="module")
def replica(bot):
    stack("replica", REPLICA_PORT)
    yield f"http://127.0.0.1:{REPLICA_PORT}"
    stack("stop", f"rasa-{REPLICA_PORT}")


def say(base, sender, text):
    # Generous: under the lock, six concurrent messages are served one after another,
    # and on a loaded 2-core CI machine each DIET turn can take seconds. This test
    # checks ordering, not speed (that is `make bench`).
    response = requests.post(f"{base}/webhooks/rest/webhook", json={"sender": sender, "message": text}, timeout=180)
    response.raise_for_status()
    return [m.get("text") for m in response.json()]


def test_a_form_continues_across_replicas(bot, replica, sender):
    assert say(bot.rasa, sender, "I want to fly to Vienna") == ["What date would you like to travel?"]
    assert say(replica, sender, "tomorrow") == ["How many passengers?"]
    assert say(bot.rasa, sender, "2")[0].startswith("Please confirm: a flight to Vienna on ")


def test_concurrent_messages_of_one_conversation_are_serialised(bot, replica, sender):
    messages = [(bot.rasa if n % 2 else replica, f"thanks {n}") for n in range(6)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        replies = list(pool.map(lambda m: say(m[0], sender, m[1]), messages))
    assert all(r == ["You're welcome! Anything else I can help with?"] for r in replies)
    events = bot.tracker(sender)["events"]
    user_texts = sorted(e["text"] for e in events if e["event"] == "user")
    assert user_texts == sorted(text for _, text in messages)
    # Under the lock every user message is followed by its own reply before the next.
    kinds = [e["event"] for e in events if e["event"] in ("user", "bot")]
    assert kinds == ["user", "bot"] * 6
