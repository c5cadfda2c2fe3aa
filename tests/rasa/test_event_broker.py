"""The redacting broker against a real RabbitMQ."""

import asyncio
import json
import uuid

import aio_pika
from rasa.utils.endpoints import EndpointConfig

from botfleet_rasa.event_broker import RedactingPikaEventBroker


async def publish_and_read(event):
    queue = f"botfleet_unit_{uuid.uuid4().hex[:8]}"
    config = EndpointConfig(url="127.0.0.1", username="guest", password="guest", queues=[queue], type="pika")
    broker = await RedactingPikaEventBroker.from_endpoint_config(config)
    try:
        broker.publish(event)
        connection = await aio_pika.connect_robust("amqp://guest:guest@127.0.0.1:5672/")
        async with connection:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, durable=True)
            for _ in range(50):
                message = await declared.get(fail=False)
                if message:
                    await message.ack()
                    await declared.delete(if_unused=False, if_empty=False)
                    return json.loads(message.body)
                await asyncio.sleep(0.1)
    finally:
        await broker.close()
    raise AssertionError("no message arrived")


def test_published_events_are_redacted():
    body = asyncio.run(publish_and_read({"event": "user", "sender_id": "b", "text": "card 4111-1111-1111-1111 mail a@b.io"}))
    assert body["text"] == "card [CARD] mail [EMAIL]"
