# Shared by the infra scripts: where state lives and which loopback ports the servers use.
# Every value can be overridden from the environment (the test suite uses its own directory and ports).
INFRA_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT_DIR=$(dirname "$INFRA_DIR")
STATE_DIR=${SENDENSE_STATE_DIR:-$PROJECT_DIR/.state}
INFLUX_PORT=${SENDENSE_INFLUX_PORT:-8086}
INFLUX_RPC_PORT=${SENDENSE_INFLUX_RPC_PORT:-$((INFLUX_PORT + 2))}
MYSQL_PORT=${SENDENSE_MYSQL_PORT:-3306}
MYSQL_DATABASE=${SENDENSE_MYSQL_DATABASE:-migratekit_oma}
MYSQL_USER=${SENDENSE_MYSQL_USER:-oma_user}
MYSQL_PASSWORD=${SENDENSE_MYSQL_PASSWORD:-oma_password}
mkdir -p "$STATE_DIR"
# Absolute, since mariadbd resolves relative paths against its data directory.
STATE_DIR=$(cd "$STATE_DIR" && pwd)

log() { printf '[infra] %s\n' "$*" >&2; }

# pid_alive FILE: true when FILE names a running process.
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pid FILE NAME: TERM the process, wait up to 30 s, then KILL.
stop_pid() {
  local file=$1 name=$2 pid
  if ! pid_alive "$file"; then log "$name is not running"; rm -f "$file"; return 0; fi
  pid=$(cat "$file")
  kill "$pid"
  for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || { rm -f "$file"; log "$name stopped"; return 0; }; sleep 0.1; done
  log "$name did not stop in 30 s; killing it"; kill -9 "$pid" 2>/dev/null; rm -f "$file"
}

# apt_install PKG...: install the Debian packages that are missing (apt-get update once per run).
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}
