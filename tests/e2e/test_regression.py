"""Recorded, anonymised conversations replayed turn by turn against the running bot."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "ci"))
import regression  # noqa: E402

RECORDINGS = sorted(regression.RECORDINGS.glob("*.yml"))


def test_there_are_recordings():
    assert len(RECORDINGS) >= 3


@pytest.mark.parametrize("recording", RECORDINGS, ids=[p.stem for p in RECORDINGS])
def test_recorded_conversation_replays_identically(bot, recording):
    assert regression.replay(recording, bot.rasa) == []


def test_a_changed_reply_is_reported(bot, tmp_path):
    changed = tmp_path / "changed.yml"
    changed.write_text("conversation: changed\nturns:\n  - user: hello\n    bot:\n      - text: Hi, something the bot never says\n")
    assert regression.replay(changed, bot.rasa)[0].startswith("changed.yml turn 1")
