#!/usr/bin/env bash
# Install, start, stop InfluxDB 1.x (Debian's `influxdb`) as a local process on loopback,
# with its data under the project's state directory. `start` is idempotent: a running server is reused.
set -euo pipefail
source "$(dirname "$0")/common.sh"
DIR=$STATE_DIR/influxdb
PIDFILE=$DIR/influxd.pid
CONF=$DIR/influxdb.conf

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
  bind-address = "127.0.0.1:$INFLUX_PORT"
  log-enabled = false
  max-body-size = 50000000
[continuous_queries]
  enabled = false
CONF
}

ping() { curl -sf -o /dev/null "http://127.0.0.1:$INFLUX_PORT/ping"; }

case "${1:-}" in
  install) apt_install influxdb influxdb-client curl ;;
  start)
    apt_install influxdb influxdb-client curl
    if pid_alive "$PIDFILE" && ping; then log "InfluxDB already running on 127.0.0.1:$INFLUX_PORT"; exit 0; fi
    if ping; then log "something else answers on 127.0.0.1:$INFLUX_PORT; reusing it"; exit 0; fi
    write_config
    nohup influxd -config "$CONF" > "$DIR/influxd.log" 2>&1 &
    echo $! > "$PIDFILE"
    for _ in $(seq 1 300); do
      ping && { log "InfluxDB running on http://127.0.0.1:$INFLUX_PORT (log: $DIR/influxd.log)"; exit 0; }
      pid_alive "$PIDFILE" || break
      sleep 0.1
    done
    log "InfluxDB did not start; last lines of $DIR/influxd.log:"; tail -20 "$DIR/influxd.log" >&2; exit 1 ;;
  stop) stop_pid "$PIDFILE" InfluxDB ;;
  status) if pid_alive "$PIDFILE" && ping; then echo "running on 127.0.0.1:$INFLUX_PORT"; else echo stopped; exit 3; fi ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
