"""`rasa data validate` on the demo bot: it must pass with --fail-on-warnings, and the
only warnings allowed are Rasa 3.6's false positives about utterances that forms
(utter_ask_<slot>) and action_restart (utter_restart) use implicitly."""

import re
import subprocess
import sys
from pathlib import Path

import yaml

BOT = Path(__file__).resolve().parents[2] / "bots/demo"


def test_rasa_data_validate_is_clean():
    result = subprocess.run(
        [str(Path(sys.executable).parent / "rasa"), "data", "validate", "--fail-on-warnings", "--config", "config.yml", "--domain", "domain.yml", "--data", "data"],
        cwd=BOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    domain = yaml.safe_load((BOT / "domain.yml").read_text())
    form_questions = {f"utter_ask_{slot}" for form in domain["forms"].values() for slot in form["required_slots"]}
    allowed = form_questions | {"utter_restart"}
    warnings = re.findall(r"UserWarning: (.*)", result.stdout + result.stderr)
    unexpected = [w for w in warnings if not any(f"'{name}' is not used in any story or rule" in w for name in allowed)]
    assert unexpected == []
