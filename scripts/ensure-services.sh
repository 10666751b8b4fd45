#!/usr/bin/env bash
# Make sure PostgreSQL, Redis and RabbitMQ answer on loopback.
#   up already           -> nothing is touched
#   installed but down   -> started
#   not installed        -> installed from Debian's packages, then started
# Also installs the command-line tools the test suite and benchmarks use (pgbouncer, pgbench).
set -euo pipefail

log() { printf 'ensure-services: %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  log "installing $* from Debian's packages"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # name, seconds, command...
  local name=$1 secs=$2; shift 2
  for _ in $(seq 1 $((secs * 5))); do
    if "$@"; then log "$name: up"; return 0; fi
    sleep 0.2
  done
  log "$name: did not come up within ${secs}s"; return 1
}

pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

ensure_postgres() {
  if command -v pg_isready >/dev/null && pg_ready; then log "postgresql: up"; return; fi
  local fresh=0
  if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
    apt_install postgresql postgresql-contrib
    fresh=1
  fi
  local version
  version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
  if ! pg_lsclusters -h 2>/dev/null | grep -q "^$version main"; then
    $SUDO pg_createcluster "$version" main >/dev/null
    fresh=1
  fi
  if [ "$fresh" -eq 1 ]; then
    # A cluster we just made: let local development and CI connect over loopback without
    # a password, as the project's default URL expects. Existing clusters are left alone.
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    $SUDO sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
    $SUDO sed -i -E "s/^#?listen_addresses.*/listen_addresses = 'localhost'/" \
      "/etc/postgresql/$version/main/postgresql.conf"
  fi
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  if [ "$fresh" -eq 1 ]; then
    # The package may have started the cluster before pg_hba.conf was edited.
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main reload || true
  fi
  wait_for postgresql 60 pg_ready
}

ensure_redis() {
  if command -v redis-cli >/dev/null && [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; then
    log "redis: up"; return
  fi
  command -v redis-server >/dev/null || apt_install redis-server
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for redis 30 sh -c '[ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]'
}

# An open port is not enough: a broker can accept TCP and never answer the AMQP handshake
# (seen here with RabbitMQ 3.10 after many quorum queues came and went). Ask for
# Connection.Start, the broker's first frame.
amqp_answers() {
  timeout 15 python3 - <<'PY' >/dev/null 2>&1
import socket
s = socket.create_connection(("127.0.0.1", 5672), timeout=10)
s.sendall(b"AMQP\x00\x00\x09\x01")
frame = s.recv(7)
raise SystemExit(0 if frame[:1] == b"\x01" else 1)
PY
}

# The broker we start writes its Erlang VM's pid here; stopping it is about that process
# and no other (never a name pattern: that would kill any Erlang node on the machine).
RABBITMQ_PID_FILE="${RABBITMQ_PID_FILE:-/var/lib/rabbitmq/commdesk-billing.pid}"

start_rabbitmq() {
  $SUDO mkdir -p "$(dirname "$RABBITMQ_PID_FILE")"
  # Open files: RabbitMQ asks for at least 4096 in development (65536 in production). The
  # server starts through `su rabbitmq`, whose pam_limits sets the user's limits (else the
  # usual 1024, about 830 sockets: fewer than a busy test run opens), so they are set there.
  # (No higher than this shell's own hard limit: pam_limits drops a value above it.)
  local limits=/etc/security/limits.d/rabbitmq-nofile.conf n want
  n=$(ulimit -Hn)
  if [ "$n" = unlimited ] || [ "$n" -gt 65536 ]; then n=65536; fi
  want=$(printf 'rabbitmq soft nofile %s\nrabbitmq hard nofile %s' "$n" "$n")
  if [ -d /etc/security/limits.d ] && [ "$(cat "$limits" 2>/dev/null)" != "$want" ]; then
    printf '%s\n' "$want" | $SUDO tee "$limits" >/dev/null
  fi
  $SUDO env RABBITMQ_PID_FILE="$RABBITMQ_PID_FILE" rabbitmq-server -detached
}

# Ask the broker to stop; if it does not (wedged), TERM then KILL the process named by its
# pid file: ours, or the package's default one (named after the node, which need not be
# this host's name: `rabbit@localhost` on a machine called otherwise).
stop_rabbitmq() {
  timeout 30 $SUDO rabbitmqctl stop >/dev/null 2>&1 || true
  local f pid
  for f in "$RABBITMQ_PID_FILE" /var/lib/rabbitmq/mnesia/rabbit@*.pid; do
    [ -s "$f" ] || continue
    pid="$($SUDO cat "$f")"
    case "$pid" in ''|*[!0-9]*) continue ;; esac
    if $SUDO kill -0 "$pid" 2>/dev/null; then
      log "rabbitmq: stopping pid $pid (from $f)"
      $SUDO kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do $SUDO kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      $SUDO kill -KILL "$pid" 2>/dev/null || true
    fi
    $SUDO rm -f "$f"
  done
}

restart_rabbitmq() {
  log "rabbitmq: not answering AMQP; restarting it"
  stop_rabbitmq
  sleep 2
  start_rabbitmq
  wait_for rabbitmq 120 port_open 5672
}

# The open-file limit the running broker got when it started (its Erlang VM's soft limit),
# or nothing when no broker of ours is found.
rabbitmq_nofile() {
  local pid
  pid="$(pgrep -u rabbitmq -f 'beam.smp.*-s rabbit' 2>/dev/null | head -1 || true)"
  [ -n "$pid" ] || pid="$(pgrep -u rabbitmq -f 'beam.smp -W' 2>/dev/null | head -1 || true)"
  [ -n "$pid" ] || return 0
  $SUDO awk '/^Max open files/ {print $4}' "/proc/$pid/limits" 2>/dev/null || true
}

ensure_rabbitmq() {
  if port_open 5672; then
    # A broker started by the machine's own start-up gets the usual 1024 open files, and
    # RabbitMQ 3.10 sizes its handle cache from that once, at start (~927 handles). A test
    # run's vhosts, quorum queues and connections outgrow it, and then the broker blocks
    # waiting for a handle: new connections get no handshake and a new vhost never
    # starts ("Making sure data directory … exists", then nothing), for good. Restart it
    # once with the limit RabbitMQ asks for.
    local nofile
    nofile="$(rabbitmq_nofile)"
    if [ -n "$nofile" ] && [ "$nofile" != unlimited ] && [ "$nofile" -lt 4096 ]; then
      log "rabbitmq: running with $nofile open files (RabbitMQ wants at least 4096); restarting it"
      stop_rabbitmq
      sleep 2
      start_rabbitmq
      wait_for rabbitmq 120 port_open 5672
      for _ in $(seq 1 60); do amqp_answers && break; sleep 2; done
      log "rabbitmq: now $(rabbitmq_nofile) open files"
    fi
    if amqp_answers; then log "rabbitmq: up"; return; fi
    restart_rabbitmq
    for _ in $(seq 1 60); do amqp_answers && { log "rabbitmq: up after restart"; return; }; sleep 2; done
    if [ "${CI:-}" = "true" ]; then
      # A CI machine's broker holds nothing but earlier runs' test queues; recovering
      # hundreds of them is what wedges it. Start it empty.
      log "rabbitmq: still not answering; CI=true, so starting it with an empty data directory"
      stop_rabbitmq
      sleep 2
      $SUDO sh -c 'rm -rf /var/lib/rabbitmq/mnesia/*'
      start_rabbitmq
      wait_for rabbitmq 120 port_open 5672
      for _ in $(seq 1 60); do amqp_answers && { log "rabbitmq: up, empty"; return; }; sleep 2; done
    fi
    echo "rabbitmq: still not answering AMQP after a restart" >&2
    exit 1
  fi
  # The node may be running with its application stopped (`rabbitmqctl stop_app`, as the
  # queue failure tests do; a run killed half-way leaves it so): start the application,
  # since starting a second node of the same name would fail.
  if command -v rabbitmqctl >/dev/null && timeout 20 $SUDO rabbitmqctl -q ping >/dev/null 2>&1; then
    log "rabbitmq: node up with its application stopped; starting the application"
    timeout 60 $SUDO rabbitmqctl -q start_app >/dev/null 2>&1 || true
    wait_for rabbitmq 60 port_open 5672
    for _ in $(seq 1 30); do amqp_answers && return; sleep 2; done
  fi
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  start_rabbitmq
  wait_for rabbitmq 90 port_open 5672
  for _ in $(seq 1 60); do amqp_answers && return; sleep 2; done
}

# The suite runs in several processes at once (pytest-xdist, scripts/test.sh), each with its
# own pools: PostgreSQL's stock 100 connections is too few for three. A local cluster below
# the floor is raised to it (a restart: the setting is read only at start); a server we do
# not run is only warned about.
PG_MIN_CONNECTIONS=300
ensure_pg_connections() {
  local current version
  current=$(psql -h 127.0.0.1 -U postgres -Atc "SHOW max_connections" 2>/dev/null || echo 0)
  if [ "$current" -ge "$PG_MIN_CONNECTIONS" ]; then return; fi
  version=$(pg_lsclusters -h 2>/dev/null | awk '$2 == "main" && $3 == "5432" {print $1}' | head -n 1)
  if [ -z "$version" ]; then
    log "postgresql: max_connections=$current (< $PG_MIN_CONNECTIONS) on a server not ours; parallel tests may run short"
    return
  fi
  log "postgresql: max_connections $current -> $PG_MIN_CONNECTIONS (restarting cluster $version/main)"
  psql -h 127.0.0.1 -U postgres -qc "ALTER SYSTEM SET max_connections = $PG_MIN_CONNECTIONS"
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main restart
  wait_for postgresql 60 pg_ready
}

ensure_tools() {
  command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || apt_install pgbouncer
  command -v pgbench >/dev/null || apt_install postgresql-contrib
}

ensure_postgres
ensure_pg_connections
ensure_redis
ensure_rabbitmq
ensure_tools
