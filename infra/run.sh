#!/usr/bin/env bash
# The whole system on this machine: install, start InfluxDB, MariaDB and Alertmanager, migrate, then run
# the API, the scheduler, the dashboard and the telemetry simulator, printing where to look.
# Ctrl-C stops the Python processes; `bash infra/influxdb.sh stop`, `bash infra/mariadb.sh stop` and
# `bash infra/alertmanager.sh stop` stop the servers.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bash "$INFRA_DIR/install.sh"
tokens=$STATE_DIR/tokens.env
gen() { "$PROJECT_DIR/.venv/bin/python" -c 'import secrets; print(secrets.token_urlsafe(24))'; }
if [ ! -f "$tokens" ]; then
  # Generated once and kept, so agents and dashboards configured with them keep working.
  umask 077
  printf 'SENDENSE_AGENT_TOKENS=%s\nSENDENSE_VIEWER_TOKENS=%s\nSENDENSE_OPERATOR_TOKENS=%s\n' \
    "$(gen)" "$(gen)" "$(gen)" > "$tokens"
  log "generated API tokens in $tokens"
elif ! grep -q '^SENDENSE_OPERATOR_TOKENS=' "$tokens"; then
  # Kept from before the operator role: the agent and viewer tokens stay, an operator token is added.
  printf 'SENDENSE_OPERATOR_TOKENS=%s\n' "$(gen)" >> "$tokens"
  log "added an operator token to $tokens"
fi
set -a; source "$tokens"; set +a
# The dashboard reads with a viewer token; logged-in operators' acknowledgements and silences go with an operator token.
: "${SENDENSE_DASHBOARD_TOKEN:=${SENDENSE_VIEWER_TOKENS%%,*}}"
: "${SENDENSE_DASHBOARD_OPERATOR_TOKEN:=${SENDENSE_OPERATOR_TOKENS%%,*}}"
export SENDENSE_DASHBOARD_TOKEN SENDENSE_DASHBOARD_OPERATOR_TOKEN SENDENSE_STATE_DIR=$STATE_DIR
export SENDENSE_INFLUX_URL=${SENDENSE_INFLUX_URL:-http://127.0.0.1:$INFLUX_PORT}
export SENDENSE_MYSQL_URL=${SENDENSE_MYSQL_URL:-mysql+pymysql://$MYSQL_USER:$MYSQL_PASSWORD@127.0.0.1:$MYSQL_PORT/$MYSQL_DATABASE?charset=utf8mb4}
bash "$INFRA_DIR/influxdb.sh" start
if [ -f "$STATE_DIR/influxdb/users.env" ]; then
  # Authentication is on (SENDENSE_INFLUX_HOST not loopback, or SENDENSE_INFLUX_AUTH=on): the pipeline
  # writes as sendense_writer, migrates as admin; Grafana reads as grafana (docs/grafana.md).
  source "$STATE_DIR/influxdb/users.env"
  export SENDENSE_INFLUX_USER=sendense_writer SENDENSE_INFLUX_PASSWORD=$INFLUX_WRITER_PASSWORD
  export SENDENSE_INFLUX_ADMIN_USER=admin SENDENSE_INFLUX_ADMIN_PASSWORD=$INFLUX_ADMIN_PASSWORD
  log "InfluxDB users and passwords: $STATE_DIR/influxdb/users.env (Grafana: user grafana)"
fi
bash "$INFRA_DIR/mariadb.sh" start
# Alertmanager (docs/alerts.md): a local one unless SENDENSE_ALERTMANAGER_URL is set (to yours, or empty: none).
if [ -z "${SENDENSE_ALERTMANAGER_URL+set}" ]; then
  if bash "$INFRA_DIR/alertmanager.sh" start; then
    am_host=${SENDENSE_ALERTMANAGER_HOST:-127.0.0.1}
    case "$am_host" in 0.0.0.0|::) am_host=127.0.0.1 ;; esac
    export SENDENSE_ALERTMANAGER_URL=http://$am_host:${SENDENSE_ALERTMANAGER_PORT:-9093}
  else
    log "Alertmanager did not start; running without it (notifications go to the other channels)"
  fi
fi
exec "$PROJECT_DIR/.venv/bin/sendense" demo "$@"
