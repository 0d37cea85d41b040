#!/usr/bin/env bash
# Install everything, then run the whole test suite. The tests start their own InfluxDB and MariaDB
# (ports 18086 and 13306, state in .state-test/) and stop them at the end. Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bash "$INFRA_DIR/install.sh"
cd "$PROJECT_DIR"
.venv/bin/ruff check .
exec .venv/bin/pytest "$@"
