#!/usr/bin/env bash
# Brings the local PostgreSQL, Apache Kafka and Centrifugo up and down, and runs the test suite against them.
#
#   deploy/local/services.sh up|down|test
#
# `test` starts only the services that are not already running and stops exactly those at the
# end (tests must not leave servers behind), then checks that no test left a replication slot:
# a forgotten slot pins WAL forever. The whole suite runs on the default PostgreSQL version;
# TestPostgresVersions also runs the core tests on each version of PGOUTBOX_TEST_PG_VERSIONS
# (default "16 17 18"; set it empty to skip the matrix), each on private clusters.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PG="$HERE/postgres.sh"
KAFKA="$HERE/kafka.sh"
CENTRIFUGO="$HERE/centrifugo.sh"

export PGOUTBOX_STATE_DIR="${PGOUTBOX_STATE_DIR:-$HOME/.cache/pgoutbox}"
PG_URL="$("$PG" url)"
KAFKA_BROKERS="127.0.0.1:${PGOUTBOX_KAFKA_PORT:-59092}"

up() {
  "$PG" start
  "$KAFKA" start
  "$CENTRIFUGO" start
  cat <<EOM

  PostgreSQL  $PG_URL
  Kafka       $KAFKA_BROKERS
  Centrifugo  $("$CENTRIFUGO" url)
  state       $PGOUTBOX_STATE_DIR

EOM
}

down() {
  "$CENTRIFUGO" stop
  "$KAFKA" stop
  "$PG" stop
}

# Slots created by tests are named it_*; any left after a run is a bug in a test.
leftover_slots() {
  psql "$PG_URL" -Atq -c "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'it\_%'" 2>/dev/null || true
}

# Test tools from Debian's packages: promtool checks the alert rules.
install_test_tools() {
  command -v promtool >/dev/null && return 0
  local sudo=""
  [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
  echo "services.sh: installing Debian's prometheus package (for promtool)" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -qq prometheus >/dev/null 2>&1 || { $sudo apt-get update -qq && $sudo apt-get install -y -qq prometheus >/dev/null; }
  # The package may start a Prometheus server; the tests only need the tool.
  $sudo service prometheus stop >/dev/null 2>&1 || true
}

# The client SDK (client/models, npm package @pgoutbox/models): `npm ci` of its pinned packages,
# then `npm test` (tsc, its unit tests on node's test runner, the size budget). Node and npm come
# from Debian's packages when missing.
test_client_models() {
  if ! command -v npm >/dev/null; then
    local sudo=""
    [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
    echo "services.sh: installing Debian's nodejs and npm packages (for client/models)" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y -qq nodejs npm >/dev/null 2>&1 || { $sudo apt-get update -qq && $sudo apt-get install -y -qq nodejs npm >/dev/null; }
  fi
  # deploy/demo/npm.sh runs `npm ci` there (and for the browser tests' playwright-core) when the
  # lock files changed, and builds the package; the Go tests call it again and find it done.
  "$ROOT/deploy/demo/npm.sh" && (cd "$ROOT/client/models" && npm test)
}

# The version matrix's server binaries, installed before the tests so that a cold cache does not
# count against a test's time. Under CI=true a version that cannot be installed fails the run;
# elsewhere its tests skip with the reason.
export PGOUTBOX_TEST_PG_VERSIONS="${PGOUTBOX_TEST_PG_VERSIONS-16 17 18}"
install_matrix_versions() {
  local v
  for v in ${PGOUTBOX_TEST_PG_VERSIONS//,/ }; do
    if ! PGOUTBOX_PG_VERSION="$v" "$PG" install; then
      if [[ "${CI:-}" == true ]]; then
        echo "FAIL: cannot install PostgreSQL $v for the version matrix (CI=true)" >&2
        return 1
      fi
      echo "services.sh: cannot install PostgreSQL $v; its matrix tests will skip" >&2
    fi
  done
}

# STARTED lists the services `test` started, stopped again by the EXIT trap. It is global: the
# trap runs after run_tests has returned, when its locals are gone.
STARTED=()

stop_started() {
  local s
  for s in "${STARTED[@]}"; do "$s" stop || true; done
}

run_tests() {
  install_test_tools
  trap stop_started EXIT
  if ! "$PG" status >/dev/null 2>&1; then "$PG" start; STARTED+=("$PG"); fi
  if ! "$KAFKA" status >/dev/null 2>&1; then "$KAFKA" start; STARTED+=("$KAFKA"); fi

  install_matrix_versions

  cd "$ROOT"
  export PGOUTBOX_TEST_DATABASE_URL="${PGOUTBOX_TEST_DATABASE_URL:-$PG_URL}"
  export PGOUTBOX_TEST_KAFKA_BROKERS="${PGOUTBOX_TEST_KAFKA_BROKERS:-$KAFKA_BROKERS}"
  # The fan-out tests start their own Centrifugo servers (own port, topic, restarts) from this binary.
  if [[ -z "${PGOUTBOX_TEST_CENTRIFUGO_BIN:-}" ]]; then
    PGOUTBOX_TEST_CENTRIFUGO_BIN="$("$CENTRIFUGO" bin)" # builds it once (a failed build stops here)
  fi
  export PGOUTBOX_TEST_CENTRIFUGO_BIN
  local rc=0
  test_client_models || rc=$?
  go vet -tags integration ./...
  go test -race -count=1 -tags integration -timeout 29m ./... || rc=$?

  local slots
  slots="$(leftover_slots)"
  if [[ -n "$slots" ]]; then
    echo "FAIL: tests left replication slots behind (they pin WAL): $slots" >&2
    psql "$PG_URL" -q -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'it\_%' AND NOT active" >/dev/null || true
    rc=1
  fi
  return "$rc"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  test) run_tests ;;
  *) echo "usage: $0 up|down|test" >&2; exit 2 ;;
esac
