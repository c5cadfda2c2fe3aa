#!/usr/bin/env bash
# System tools the tests need beyond the venvs: promtool, from Debian's prometheus
# package, checks and unit-tests the alert rules. Installed once; a no-op afterwards.
set -euo pipefail
if command -v promtool >/dev/null; then
  exit 0
fi
echo "==> installing promtool (Debian package prometheus)"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
if ! { "${sudo_cmd[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }; then
  echo "error: could not install promtool; run: apt-get update && apt-get install -y prometheus" >&2
  exit 1
fi
