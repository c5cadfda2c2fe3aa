#!/usr/bin/env python3
"""Parses/s and latency of the NLU service; prints JSON. See botfleet_serving/bench.py.

.venvs/serving/bin/python model-serving/bench_serving.py --start --tag botfleet-nlu:latest
.venvs/serving/bin/python model-serving/bench_serving.py --url http://127.0.0.1:3000
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from botfleet_serving.bench import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
