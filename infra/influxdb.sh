#!/usr/bin/env bash
# Install, start, stop InfluxDB 1.x (Debian's `influxdb`) as a local process, with its data under the
# project's state directory. `start` is idempotent: a running server is reused.
#   SENDENSE_INFLUX_HOST   address to listen on (default 127.0.0.1)
#   SENDENSE_INFLUX_AUTH   on|off; default: on when the address is not loopback. With authentication on,
#                          `start` creates three users (passwords generated once, kept in
#                          $STATE_DIR/influxdb/users.env, mode 600):
#                            admin           all privileges (sendense migrate: databases, policies)
#                            sendense_writer ALL on the database (the API and the scheduler: write, DROP SERIES)
#                            grafana         READ on the database (Grafana's data source)
set -euo pipefail
source "$(dirname "$0")/common.sh"
DIR=$STATE_DIR/influxdb
PIDFILE=$DIR/influxd.pid
CONF=$DIR/influxdb.conf
USERS=$DIR/users.env
HOST=${SENDENSE_INFLUX_HOST:-127.0.0.1}
DATABASE=${SENDENSE_INFLUX_DB:-sendense}
case "$HOST" in 127.*|localhost|::1) default_auth=off ;; *) default_auth=on ;; esac
AUTH=${SENDENSE_INFLUX_AUTH:-$default_auth}
[[ "$HOST" =~ ^[A-Za-z0-9._:-]+$ ]] || { log "bad SENDENSE_INFLUX_HOST: $HOST"; exit 2; }
[[ "$DATABASE" =~ ^[A-Za-z0-9_]{1,64}$ ]] || { log "refusing unsafe database name: $DATABASE"; exit 2; }

write_config() {
  mkdir -p "$DIR/meta" "$DIR/data" "$DIR/wal"
  cat > "$CONF" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$INFLUX_RPC_PORT"
[meta]
  dir = "$DIR/meta"
[data]
  dir = "$DIR/data"
  wal-dir = "$DIR/wal"
  query-log-enabled = false
  index-version = "tsi1"
[monitor]
  store-enabled = false
[http]
  bind-address = "$HOST:$INFLUX_PORT"
  auth-enabled = $([ "$AUTH" = on ] && echo true || echo false)
  log-enabled = false
  max-body-size = 50000000
[continuous_queries]
  enabled = false
CONF
}

ping() { curl -sf -o /dev/null "http://$(connect_host):$INFLUX_PORT/ping"; }
connect_host() { case "$HOST" in 0.0.0.0|::) echo 127.0.0.1 ;; *) echo "$HOST" ;; esac; }

# query USER PASSWORD STATEMENT: run InfluxQL as USER (POST, as statements that change things need).
query() {
  curl -sf -XPOST -u "$1:$2" "http://$(connect_host):$INFLUX_PORT/query" \
    --data-urlencode "q=$3"
}

provision_users() {
  # Passwords: letters and digits only (they sit inside InfluxQL string literals below).
  if [ ! -f "$USERS" ]; then
    gen() { head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24; }
    (umask 077; printf 'INFLUX_ADMIN_PASSWORD=%s\nINFLUX_WRITER_PASSWORD=%s\nINFLUX_GRAFANA_PASSWORD=%s\n' \
      "$(gen)" "$(gen)" "$(gen)" > "$USERS")
    log "generated InfluxDB passwords in $USERS"
  fi
  # shellcheck disable=SC1090
  source "$USERS"
  for p in "$INFLUX_ADMIN_PASSWORD" "$INFLUX_WRITER_PASSWORD" "$INFLUX_GRAFANA_PASSWORD"; do
    [[ "$p" =~ ^[A-Za-z0-9]{12,}$ ]] || { log "InfluxDB passwords in $USERS must be 12+ letters and digits"; exit 2; }
  done
  # The first user may be created without credentials (InfluxDB allows it while none exists).
  query admin "$INFLUX_ADMIN_PASSWORD" "SHOW USERS" >/dev/null 2>&1 \
    || curl -sf -XPOST "http://$(connect_host):$INFLUX_PORT/query" \
         --data-urlencode "q=CREATE USER admin WITH PASSWORD '$INFLUX_ADMIN_PASSWORD' WITH ALL PRIVILEGES" >/dev/null
  query admin "$INFLUX_ADMIN_PASSWORD" "CREATE DATABASE $DATABASE" >/dev/null
  for stmt in "CREATE USER sendense_writer WITH PASSWORD '$INFLUX_WRITER_PASSWORD'" \
              "CREATE USER grafana WITH PASSWORD '$INFLUX_GRAFANA_PASSWORD'" \
              "GRANT ALL ON $DATABASE TO sendense_writer" "GRANT READ ON $DATABASE TO grafana"; do
    query admin "$INFLUX_ADMIN_PASSWORD" "$stmt" >/dev/null 2>&1 || true  # users exist already
  done
  log "InfluxDB authentication on: users admin, sendense_writer (ALL on $DATABASE), grafana (READ on $DATABASE)"
}

case "${1:-}" in
  install) apt_install influxdb influxdb-client curl ;;
  start)
    apt_install influxdb influxdb-client curl
    if pid_alive "$PIDFILE" && ping; then
      log "InfluxDB already running on $HOST:$INFLUX_PORT"; [ "$AUTH" = on ] && provision_users; exit 0
    fi
    if ping; then log "something else answers on $HOST:$INFLUX_PORT; reusing it"; exit 0; fi
    write_config
    nohup influxd -config "$CONF" > "$DIR/influxd.log" 2>&1 &
    echo $! > "$PIDFILE"
    for _ in $(seq 1 300); do
      if ping; then
        [ "$AUTH" = on ] && provision_users
        log "InfluxDB running on http://$HOST:$INFLUX_PORT (log: $DIR/influxd.log)"; exit 0
      fi
      pid_alive "$PIDFILE" || break
      sleep 0.1
    done
    log "InfluxDB did not start; last lines of $DIR/influxd.log:"; tail -20 "$DIR/influxd.log" >&2; exit 1 ;;
  stop) stop_pid "$PIDFILE" InfluxDB ;;
  status) if pid_alive "$PIDFILE" && ping; then echo "running on $HOST:$INFLUX_PORT"; else echo stopped; exit 3; fi ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
