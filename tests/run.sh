#!/usr/bin/env bash
# Install everything the tests need, then run them: bash tests/run.sh [pytest options]
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt  # -e .[dev]
# the browser tests drive Debian's chromium (Playwright's own browser download needs the internet)
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: install Debian's chromium (sudo apt-get install chromium) to run the browser tests" >&2
  fi
fi
python -m pytest --durations=10 "$@"
