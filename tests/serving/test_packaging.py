"""Static checks of the build files (no Docker engine here): they name what exists."""

from __future__ import annotations

import fnmatch
import importlib

import yaml
from serving_support import REPO

SERVING = REPO / "model-serving"


def test_bentofile_points_at_the_service_and_includes_the_package() -> None:
    spec = yaml.safe_load((SERVING / "bentofile.yaml").read_text())
    module, _, attr = spec["service"].partition(":")
    service = getattr(importlib.import_module(module), attr)
    assert service.name == "botfleet-nlu"
    files = [str(p.relative_to(SERVING)) for p in (SERVING / "botfleet_serving").rglob("*") if p.is_file()]
    needed = [f for f in files if f.endswith((".py", ".txt")) and "__pycache__" not in f]
    for f in needed:
        assert any(fnmatch.fnmatch(f, pat) for pat in spec["include"]), f
    pins = {p.split("==")[0]: p.split("==")[1] for p in spec["python"]["packages"]}
    reqs = {
        line.split("==")[0]: line.split("==")[1]
        for line in (SERVING / "requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    for name, version in pins.items():
        assert reqs.get(name) == version, name  # the image runs what the tests ran
    assert pins["torch"] == "2.13.0"


def test_dockerfile_runs_as_non_root_with_healthcheck() -> None:
    text = (SERVING / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert "USER 1001" in text and "EXPOSE 3000" in text
    assert "HEALTHCHECK" in text and "/readyz" in text
    assert "download.pytorch.org/whl/cpu" in text  # CPU wheel, no CUDA
    assert (SERVING / "docker-entrypoint.sh").stat().st_mode & 0o111
