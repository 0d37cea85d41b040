#!/usr/bin/env bash
# Install, start, stop MariaDB (Debian's `mariadb-server`) as a local process on loopback, with its
# data under the project's state directory, and create the application database and user.
# `start` is idempotent: a running server is reused, and the database and user are ensured each time.
set -euo pipefail
source "$(dirname "$0")/common.sh"
DIR=$STATE_DIR/mariadb
PIDFILE=$DIR/mariadbd.pid
SOCKET=$DIR/mariadbd.sock

client() { mariadb --no-defaults -S "$SOCKET" -u root "$@"; }
alive() { mariadb-admin --no-defaults -S "$SOCKET" -u root ping >/dev/null 2>&1; }

provision() {
  # Identifiers cannot be bound as parameters; these come from our own environment and are
  # checked against a strict pattern before they reach SQL.
  for v in "$MYSQL_DATABASE" "$MYSQL_USER"; do
    [[ "$v" =~ ^[A-Za-z0-9_]{1,64}$ ]] || { log "refusing unsafe identifier: $v"; exit 2; }
  done
  [[ "$MYSQL_PASSWORD" != *"'"* && "$MYSQL_PASSWORD" != *\\* ]] || { log "password must not hold quotes or backslashes"; exit 2; }
  client <<SQL
CREATE DATABASE IF NOT EXISTS \`$MYSQL_DATABASE\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS '$MYSQL_USER'@'localhost' IDENTIFIED BY '$MYSQL_PASSWORD';
CREATE USER IF NOT EXISTS '$MYSQL_USER'@'127.0.0.1' IDENTIFIED BY '$MYSQL_PASSWORD';
GRANT ALL PRIVILEGES ON \`$MYSQL_DATABASE\`.* TO '$MYSQL_USER'@'localhost';
GRANT ALL PRIVILEGES ON \`$MYSQL_DATABASE\`.* TO '$MYSQL_USER'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
}

case "${1:-}" in
  install) apt_install mariadb-server mariadb-client ;;
  start)
    apt_install mariadb-server mariadb-client
    if pid_alive "$PIDFILE" && alive; then
      log "MariaDB already running on 127.0.0.1:$MYSQL_PORT"; provision; exit 0
    fi
    mkdir -p "$DIR"
    if [ ! -d "$DIR/data/mysql" ]; then
      log "initialising MariaDB data directory $DIR/data"
      mariadb-install-db --no-defaults --datadir="$DIR/data" --user="$(id -un)" \
        --auth-root-authentication-method=socket --skip-test-db > "$DIR/install.log" 2>&1 \
        || { tail -20 "$DIR/install.log" >&2; exit 1; }
    fi
    nohup mariadbd --no-defaults --datadir="$DIR/data" --socket="$SOCKET" --port="$MYSQL_PORT" \
      --bind-address=127.0.0.1 --pid-file="$DIR/mariadbd.server.pid" --user="$(id -un)" \
      --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
      --skip-name-resolve --max-connections=500 --innodb-buffer-pool-size=256M \
      --log-error="$DIR/mariadbd.log" > /dev/null 2>&1 &
    echo $! > "$PIDFILE"
    for _ in $(seq 1 300); do
      if alive; then provision; log "MariaDB running on 127.0.0.1:$MYSQL_PORT (socket $SOCKET)"; exit 0; fi
      pid_alive "$PIDFILE" || break
      sleep 0.1
    done
    log "MariaDB did not start; last lines of $DIR/mariadbd.log:"; tail -20 "$DIR/mariadbd.log" >&2; exit 1 ;;
  stop) stop_pid "$PIDFILE" MariaDB ;;
  status) if pid_alive "$PIDFILE" && alive; then echo "running on 127.0.0.1:$MYSQL_PORT"; else echo stopped; exit 3; fi ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
