"""A raw card number, e-mail or phone number a user sends must not reach Redis,
PostgreSQL, RabbitMQ messages or log files. Each store is searched for real."""

import json
import time

import pika
import psycopg
import redis
from conftest import ENV, RUN

CARD = "4539 1488 0343 6467"
SECRETS = [CARD, CARD.replace(" ", ""), "jane.roe@example.org", "+1 (415) 555-0123", "4155550123"]


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text or s.replace(" ", "") in text.replace(" ", "")]


def test_pii_never_reaches_stores_broker_or_logs(bot, sender):
    bot.say(sender, f"my card number is {CARD}")
    bot.say(sender, "email me at jane.roe@example.org or call +1 (415) 555-0123")
    bot.say(sender, "How much does the laptop cost? card 4539148803436467")
    tracker = bot.tracker(sender)
    assert any("[CARD]" in (e.get("text") or "") for e in tracker["events"] if e["event"] == "user")
    time.sleep(1.0)  # let the broker's background publishes land

    # Redis: every key of the bot's prefix, trackers and locks.
    client = redis.Redis(host="127.0.0.1", port=6379)
    keys = list(client.scan_iter(f"{ENV['BOTFLEET_REDIS_KEY_PREFIX']}:*"))
    assert keys, "the bot stored nothing in Redis"
    redis_dump = "".join(client.dump(key).decode("latin-1") for key in keys)
    assert "jane.roe" not in redis_dump and not leaks(redis_dump)

    # PostgreSQL: every text column of every table of the bot's database.
    with psycopg.connect(ENV["BOTFLEET_DATABASE_URL"]) as connection:
        tables = [r[0] for r in connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        dump = "".join(json.dumps(row, default=str) for table in tables for row in connection.execute(f'SELECT * FROM "{table}"'))
    assert not leaks(dump)

    # RabbitMQ: every message on the bot's event queue (read, then requeued).
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672))
    channel = connection.channel()
    bodies = []
    while True:
        method, _, body = channel.basic_get(ENV["BOTFLEET_EVENTS_QUEUE"], auto_ack=False)
        if method is None:
            break
        bodies.append(body.decode())
    connection.close()  # unacknowledged messages return to the queue
    assert any(sender in body for body in bodies), "no events of this conversation were published"
    assert not leaks("".join(bodies))

    # Logs of both services.
    logs = "".join(path.read_text(errors="replace") for path in RUN.glob("*.log"))
    assert logs and not leaks(logs)


def test_logs_are_json_lines(bot, sender):
    bot.say(sender, "hi")
    lines = [line for line in (RUN / "actions.log").read_text().splitlines() if line.startswith("{")]
    assert lines
    for line in lines:
        record = json.loads(line)
        assert {"@timestamp", "log.level", "message", "service.name"} <= record.keys()
    rasa_records = [json.loads(line) for line in (RUN / "rasa.log").read_text().splitlines() if line.startswith("{")]
    assert any(r["service.name"] == "rasa" for r in rasa_records)
