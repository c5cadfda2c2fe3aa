"""A RabbitMQ (pika) event broker that never publishes PII."""

from __future__ import annotations

from typing import Any, Dict, Optional

from rasa.core.brokers.pika import PikaEventBroker

from botfleet_common.pii import redact_value


class RedactingPikaEventBroker(PikaEventBroker):
    """endpoints.yml: `event_broker: {type: botfleet_rasa.event_broker.RedactingPikaEventBroker, url: ..., queues: [...]}`.

    The tracker store already redacts the events it streams; redacting again here
    covers events published by anything else."""

    def publish(self, event: Dict[str, Any], headers: Optional[Dict[str, str]] = None) -> None:
        super().publish(redact_value(event), headers)
