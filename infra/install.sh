#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian bookworm machine: the Debian packages of
# both servers, a virtualenv (.venv) with the project and its test tools, and the npm tools of the
# TypeScript contract test (tests/typescript/node_modules). Safe to run again.
set -euo pipefail
source "$(dirname "$0")/common.sh"
# poppler-utils: pdftotext/pdfimages of the report tests; Pango: WeasyPrint's text layout.
packages=(influxdb influxdb-client mariadb-server mariadb-client nginx prometheus prometheus-alertmanager curl chromium fonts-dejavu-core nodejs
  poppler-utils libpango-1.0-0 libpangoft2-1.0-0)
# Debian's nodejs comes without npm; a nodejs from elsewhere (NodeSource) bundles it and conflicts with Debian's.
command -v npm >/dev/null || packages+=(npm)
apt_install "${packages[@]}"
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
# The TypeScript tools of the contract test (tests/integration/test_job_sheet_types.py), as pinned in the lock file.
TS_DIR=$PROJECT_DIR/tests/typescript
ts_stamp=$TS_DIR/node_modules/.installed-$(sha256sum "$TS_DIR/package-lock.json" | cut -c1-16)
if [ ! -f "$ts_stamp" ]; then
  log "installing the TypeScript test tools (npm ci in tests/typescript)"
  (cd "$TS_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  touch "$ts_stamp"
fi
