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

ensure_rabbitmq() {
  if port_open 5672; then log "rabbitmq: up"; return; fi
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  $SUDO rabbitmq-server -detached
  wait_for rabbitmq 90 port_open 5672
}

ensure_tools() {
  command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || apt_install pgbouncer
  command -v pgbench >/dev/null || apt_install postgresql-contrib
}

ensure_postgres
ensure_redis
ensure_rabbitmq
ensure_tools
