#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environments under .venvs/.
# Each service gets its own, as it gets its own image: Rasa pins Python 3.10 and
# pydantic 1, which nothing else should inherit. A venv is rebuilt only when its
# requirement files change (stamp = their hash).
set -euo pipefail
cd "$(dirname "$0")/.."

find_python310() {
  for candidate in python3.10 "$(pyenv root 2>/dev/null)/versions/"3.10*/bin/python3.10 /root/.pyenv/versions/3.10*/bin/python3.10 /usr/bin/python3.10; do
    if [ -x "$(command -v "$candidate" 2>/dev/null || echo "$candidate")" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: Python 3.10 not found (Rasa 3.6 needs it); install it with pyenv" >&2
  return 1
}

find_python311() {
  for candidate in python3.11 python3; do
    if "$candidate" -c 'import sys; assert sys.version_info[:2] >= (3, 11)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: Python 3.11+ not found" >&2
  return 1
}

# make_venv NAME PYTHON PIP-ARGS... : (re)creates .venvs/NAME when its inputs changed.
make_venv() {
  local name=$1 python=$2; shift 2
  local dir=.venvs/$name stamp
  stamp=$(cat "$0" "$@" 2>/dev/null | sha256sum | cut -c1-16)
  if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$stamp" ]; then
    return 0
  fi
  echo "==> building venv $name with $($python --version)"
  rm -rf "$dir"
  "$python" -m venv "$dir"
  "$dir/bin/pip" install -q --upgrade "pip<25" "setuptools<71" wheel
  local args=()
  for f in "$@"; do
    case "$f" in
      *requirements*.txt) args+=(-r "$f") ;;
      *pyproject.toml) args+=(-e "$(dirname "$f")") ;;
    esac
  done
  "$dir/bin/pip" install -q "${args[@]}" pytest==8.4.2 mypy==1.13.0
  echo "$stamp" > "$dir/.stamp"
}

which=${1:-all}
PY310=$(find_python310)
PY311=$(find_python311)
if [ "$which" = all ] || [ "$which" = rasa ]; then
  make_venv rasa "$PY310" services/rasa/requirements.txt services/common/pyproject.toml services/rasa/pyproject.toml
fi
if [ "$which" = all ] || [ "$which" = actions ]; then
  make_venv actions "$PY310" services/action-server/requirements.txt services/common/pyproject.toml services/action-server/pyproject.toml
fi
if [ "$which" = all ] || [ "$which" = operator ]; then
  make_venv operator "$PY311" operator/requirements.txt operator/requirements-test.txt operator/pyproject.toml
fi
if [ "$which" = all ] || [ "$which" = serving ]; then
  # BentoML needs pydantic 2 and torch (the CPU build pinned in requirements.txt).
  make_venv serving "$PY311" model-serving/requirements.txt model-serving/pyproject.toml
fi
if [ "$which" = all ] || [ "$which" = gateway ]; then
  make_venv gateway "$PY311" services/gateway/requirements.txt services/gateway/requirements-test.txt services/common/pyproject.toml services/gateway/pyproject.toml
fi
if [ "$which" = all ] || [ "$which" = dev ]; then
  make_venv dev "$PY311" tests/requirements.txt ci/cli/pyproject.toml
fi
