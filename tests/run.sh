#!/usr/bin/env bash
# Install everything the tests need, then run them: bash tests/run.sh [pytest options]
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt  # -e .[dev]
# Debian's packages the tests drive: chromium for the browser tests (Playwright's own browser download needs
# the internet), nginx for the front door in deploy/, redis-server for limits shared by replicas
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/sbin/nginx ] || need+=(nginx)
[ -x /usr/bin/redis-server ] || need+=(redis-server)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "note: install Debian's ${need[*]} (sudo apt-get install ${need[*]}) to run the tests that need them" >&2
  fi
fi
python -m pytest --durations=10 "$@"
