#!/usr/bin/env bash
# A private PostgreSQL cluster for development and the integration tests.
#
#   deploy/local/postgres.sh install|start|stop|status|wipe
#
# It uses Debian's PostgreSQL server (installed with apt when initdb is missing) and keeps the
# cluster in a state directory outside the repository, so a `git clean` never destroys it and a
# fresh clone reuses it. The cluster is configured for logical decoding (wal_level=logical) with a
# FINITE max_slot_wal_keep_size: a forgotten test slot must never be able to fill this machine's
# disk. Every subcommand is safe to run twice.
#
# Environment:
#   PGOUTBOX_STATE_DIR  state directory (default $HOME/.cache/pgoutbox); the cluster lives in $STATE/pg
#   PGOUTBOX_PG_PORT    TCP port on 127.0.0.1 (default 55432)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${PGOUTBOX_STATE_DIR:-$HOME/.cache/pgoutbox}"
PORT="${PGOUTBOX_PG_PORT:-55432}"
PGDIR="$STATE/pg"
DATA="$PGDIR/data"
SOCKDIR="$PGDIR/run"
LOG="$PGDIR/postgres.log"
URL="postgres://pgoutbox:pgoutbox@127.0.0.1:$PORT/pgoutbox"

log() { echo "postgres.sh: $*" >&2; }

# bindir finds the newest PostgreSQL server installed from Debian's packages.
bindir() {
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
  if [[ -z "$d" || ! -x "$d/initdb" ]]; then
    return 1
  fi
  echo "$d"
}

install_server() {
  if bindir >/dev/null; then
    return 0
  fi
  log "installing Debian's postgresql package (initdb not found)"
  local sudo=""
  [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq postgresql postgresql-contrib >/dev/null
  # The package starts a default cluster on port 5432; it is not ours and not needed.
  $sudo service postgresql stop >/dev/null 2>&1 || true
  bindir >/dev/null || { log "initdb still not found after installing postgresql"; exit 1; }
}

# The server refuses to run as root. As root we run it as Debian's `postgres` user, which must
# be able to traverse into the state directory (which may be under /root): grant execute-only
# (no listing) on the ancestors that lack it.
as_owner() {
  if [[ "$(id -u)" -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

grant_traverse() {
  [[ "$(id -u)" -eq 0 ]] || return 0
  local p="$PGDIR"
  while [[ "$p" != "/" ]]; do
    p="$(dirname "$p")"
    if ! runuser -u postgres -- test -x "$p"; then
      log "granting execute-only permission on $p so the postgres user can reach $PGDIR"
      chmod o+x "$p"
    fi
  done
}

init_cluster() {
  local bin="$1"
  mkdir -p "$PGDIR"
  if [[ "$(id -u)" -eq 0 ]]; then
    chown postgres:postgres "$PGDIR"
    grant_traverse
  fi
  as_owner mkdir -p "$SOCKDIR"
  if [[ -f "$DATA/PG_VERSION" ]]; then
    return 0
  fi
  log "creating cluster in $DATA"
  as_owner "$bin/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >/dev/null
  as_owner tee -a "$DATA/postgresql.conf" >/dev/null <<EOF

# --- pgoutbox development cluster ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$SOCKDIR'
max_connections = 200
wal_level = logical
# Parallel tests each hold their own slot and walsender.
max_replication_slots = 64
max_wal_senders = 64
# Finite, so a forgotten slot is invalidated instead of filling the disk.
max_slot_wal_keep_size = 4GB
wal_sender_timeout = 60s
# A throwaway cluster: skip fsync for speed. Relay crash tests kill the relay, not the server.
fsync = off
full_page_writes = off
log_min_messages = warning
log_replication_commands = on
log_line_prefix = '%m [%p] %q%u@%d '
EOF
}

is_running() {
  local bin="$1"
  [[ -f "$DATA/postmaster.pid" ]] && as_owner "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

bootstrap_roles() {
  local bin="$1"
  as_owner "$bin/psql" -q -h "$SOCKDIR" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgoutbox') THEN
    CREATE ROLE pgoutbox LOGIN REPLICATION PASSWORD 'pgoutbox';
  END IF;
  -- A role WITHOUT the REPLICATION attribute, for the test of that misconfiguration.
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'pgoutbox_norepl') THEN
    CREATE ROLE pgoutbox_norepl LOGIN PASSWORD 'pgoutbox_norepl';
  END IF;
END $$;
SELECT 'CREATE DATABASE pgoutbox OWNER pgoutbox'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'pgoutbox') \gexec
-- A second database on the same server, for tests of a quiet outbox on a busy cluster.
SELECT 'CREATE DATABASE pgoutbox_other OWNER pgoutbox'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'pgoutbox_other') \gexec
SQL
  # The least-privilege relay role (LOGIN REPLICATION, nothing else), made by the very SQL that
  # operators run, so the tests that stream as this role prove that SQL; a password for the tests.
  as_owner "$bin/psql" -q -h "$SOCKDIR" -p "$PORT" -U postgres -d pgoutbox -v ON_ERROR_STOP=1 \
    -v role=pgoutbox_relay <"$HERE/../sql/relay-role.sql" >/dev/null
  as_owner "$bin/psql" -q -h "$SOCKDIR" -p "$PORT" -U postgres -d pgoutbox -v ON_ERROR_STOP=1 \
    -c "ALTER ROLE pgoutbox_relay PASSWORD 'pgoutbox_relay'" >/dev/null
}

start() {
  install_server
  local bin
  bin="$(bindir)"
  init_cluster "$bin"
  if is_running "$bin"; then
    log "already running on 127.0.0.1:$PORT"
  else
    as_owner "$bin/pg_ctl" -D "$DATA" -l "$LOG" -o "-p $PORT" -w -t 60 start >/dev/null ||
      { log "start failed; last lines of $LOG:"; tail -n 30 "$LOG" >&2; exit 1; }
  fi
  # Really answering: a TCP connection, not just a pid file.
  local i
  for i in $(seq 1 60); do
    if "$bin/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then break; fi
    sleep 0.5
  done
  "$bin/pg_isready" -q -h 127.0.0.1 -p "$PORT" || { log "not answering on 127.0.0.1:$PORT"; exit 1; }
  bootstrap_roles "$bin"
  log "ready: $URL"
}

stop() {
  local bin
  if ! bin="$(bindir)"; then
    return 0
  fi
  if [[ -f "$DATA/postmaster.pid" ]]; then
    as_owner "$bin/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  fi
  # Whatever survived (a crashed pg_ctl, a stale pid file): end it so nothing is left behind.
  pkill -f -- "postgres -D $DATA" 2>/dev/null || true
  log "stopped"
}

status() {
  local bin
  if bin="$(bindir)" && is_running "$bin" && "$bin/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
    echo "postgres: running, $URL"
    return 0
  fi
  echo "postgres: not running (127.0.0.1:$PORT)"
  return 1
}

case "${1:-}" in
  install) install_server ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  wipe) stop; rm -rf "$PGDIR"; log "removed $PGDIR" ;;
  url) echo "$URL" ;;
  *) echo "usage: $0 install|start|stop|status|wipe|url" >&2; exit 2 ;;
esac
