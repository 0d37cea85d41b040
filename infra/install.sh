#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian bookworm machine: the Debian packages of
# both servers, and a virtualenv (.venv) with the project and its test tools. Safe to run again.
set -euo pipefail
source "$(dirname "$0")/common.sh"
apt_install influxdb influxdb-client mariadb-server mariadb-client nginx prometheus curl chromium fonts-dejavu-core
PYTHON=${PYTHON:-python3}
if [ ! -x "$PROJECT_DIR/.venv/bin/python" ]; then
  log "creating virtualenv $PROJECT_DIR/.venv"
  "$PYTHON" -m venv "$PROJECT_DIR/.venv"
fi
stamp=$PROJECT_DIR/.venv/.installed-$(sha256sum "$PROJECT_DIR/pyproject.toml" | cut -c1-16)
if [ ! -f "$stamp" ]; then
  log "installing Python packages (pip install -e '.[test]')"
  "$PROJECT_DIR/.venv/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$PROJECT_DIR/.venv/bin/python" -m pip install -q -e "$PROJECT_DIR[test]"
  touch "$stamp"
fi
