import json
import logging

from botfleet_common.jsonlog import EcsJsonFormatter


def format_record(**kwargs):
    logger = logging.getLogger("botfleet.test")
    record = logger.makeRecord("botfleet.test", logging.WARNING, __file__, 1, kwargs.pop("msg"), kwargs.pop("args", ()), kwargs.pop("exc_info", None), extra=kwargs or None)
    return json.loads(EcsJsonFormatter("unit").format(record))


def test_lines_are_ecs_json():
    line = format_record(msg="hello %s", args=("world",))
    assert line["message"] == "hello world"
    assert line["log.level"] == "warning"
    assert line["service.name"] == "unit"
    assert line["ecs.version"]
    assert line["@timestamp"].endswith("+00:00")


def test_message_args_extra_and_errors_are_redacted():
    try:
        raise ValueError("bad card 4111 1111 1111 1111")
    except ValueError:
        import sys

        line = format_record(msg="user said %s", args=("4111-1111-1111-1111 me@x.org",), exc_info=sys.exc_info(), sender="a@b.com")
    dumped = json.dumps(line)
    assert "4111" not in dumped and "me@x.org" not in dumped and "a@b.com" not in dumped
    assert line["message"] == "user said [CARD] [EMAIL]"
    assert line["error.type"] == "ValueError"
    assert line["labels"] == {"sender": "[EMAIL]"}
