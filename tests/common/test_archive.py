from botfleet_common import archive


def test_archiving_is_idempotent_and_ordered(engine):
    events = [{"event": "user", "timestamp": 2.0, "text": "b"}, {"event": "bot", "timestamp": 1.0, "text": "a"}]
    archive.append_events(engine, "conv-1", events)
    archive.append_events(engine, "conv-1", events)  # a retry after a failed trim
    archive.append_events(engine, "conv-2", [{"event": "user", "timestamp": 3.0, "text": "other"}])
    history = archive.conversation_history(engine, "conv-1")
    assert [e["text"] for e in history] == ["a", "b"]


def test_empty_append_writes_nothing(engine):
    assert archive.append_events(engine, "conv-1", []) == 0
    assert archive.conversation_history(engine, "conv-1") == []
