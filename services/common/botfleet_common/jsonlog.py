"""ECS-compatible JSON-lines logging, with PII redaction of everything it writes.

Used as a logging `formatter` class in dictConfig files (Rasa's --logging-config-file)
and by `configure()` in services that set up logging themselves.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from datetime import datetime, timezone
from typing import Any

from botfleet_common.pii import redact, redact_value

ECS_VERSION = "8.11.0"
# Attributes every LogRecord has; anything else was passed through `extra=` and is
# emitted under "labels" so that log pipelines can index it.
_RECORD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class EcsJsonFormatter(logging.Formatter):
    """Formats records as one ECS JSON object per line."""

    def __init__(self, service_name: str | None = None, **kwargs: Any) -> None:
        super().__init__()
        self.service_name = service_name or os.environ.get("BOTFLEET_SERVICE_NAME", "botfleet")

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "@timestamp": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "log.level": record.levelname.lower(),
            "log.logger": record.name,
            "message": redact(record.getMessage()),
            "service.name": self.service_name,
            "process.pid": record.process,
            "ecs.version": ECS_VERSION,
        }
        if record.exc_info and record.exc_info[0] is not None:
            document["error.type"] = record.exc_info[0].__name__
            document["error.message"] = redact(str(record.exc_info[1]))
            document["error.stack_trace"] = redact(
                "".join(traceback.format_exception(*record.exc_info))
            )
        labels = {
            key: value for key, value in vars(record).items() if key not in _RECORD_FIELDS
        }
        if labels:
            document["labels"] = redact_value(_jsonable(labels))
        return json.dumps(document, ensure_ascii=False)


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        if isinstance(value, dict):
            return {str(k): _jsonable(v) for k, v in value.items()}
        return repr(value)


def configure(service_name: str, level: str | None = None) -> None:
    """Routes the root logger to stdout as ECS JSON lines."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(EcsJsonFormatter(service_name))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or os.environ.get("LOG_LEVEL") or "INFO").upper())


def adopt_root_handlers(service_name: str | None = None) -> None:
    """Switches every handler already on the root logger to ECS JSON, and routes Python
    warnings into logging. For hosts (Rasa's CLI) that install their own handlers after
    reading the logging configuration."""
    formatter = EcsJsonFormatter(service_name)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(formatter)
    logging.captureWarnings(True)
