#!/usr/bin/env bash
# Brings the local PostgreSQL, Apache Kafka and Centrifugo up and down, and runs the test suite against them.
#
#   deploy/local/services.sh up|down|env|test|test-cluster
#
# PGOUTBOX_TOPOLOGY=cluster switches up, down and env to the cluster topology (3 Kafka brokers,
# Redis, 2 Centrifugo nodes behind haproxy: deploy/local/cluster.sh); the default is one of each.
# `up` prints, last, the addresses as KEY=value lines; `env` prints them without starting anything.
# `test-cluster` brings the cluster up (stopping at the end what it started) and runs the fault
# tests against it (integration/cluster).
#
# `test` starts only the services that are not already running and stops exactly those at the
# end (tests must not leave servers behind), then checks that no test left a replication slot:
# a forgotten slot pins WAL forever. The whole suite runs on the default PostgreSQL version;
# TestPostgresVersions also runs the core tests on each version of PGOUTBOX_TEST_PG_VERSIONS
# (default "16 17 18"; set it empty to skip the matrix), each on private clusters.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
LIB_NAME=services.sh
# shellcheck source=deploy/local/lib.sh
source "$HERE/lib.sh"
CLUSTER="$HERE/cluster.sh"
TOPOLOGY="${PGOUTBOX_TOPOLOGY:-single}"
PG="$HERE/postgres.sh"
KAFKA="$HERE/kafka.sh"
CENTRIFUGO="$HERE/centrifugo.sh"

export PGOUTBOX_STATE_DIR="${PGOUTBOX_STATE_DIR:-$HOME/.cache/pgoutbox}"
PG_URL="$("$PG" url)"
KAFKA_BROKERS="127.0.0.1:${PGOUTBOX_KAFKA_PORT:-59092}"

up() {
  if [[ "$TOPOLOGY" == cluster ]]; then "$CLUSTER" up; return; fi
  "$PG" start
  "$KAFKA" start
  "$CENTRIFUGO" start
  print_env
}

down() {
  if [[ "$TOPOLOGY" == cluster ]]; then "$CLUSTER" down; return; fi
  "$CENTRIFUGO" stop
  "$KAFKA" stop
  "$PG" stop
}

print_env() {
  if [[ "$TOPOLOGY" == cluster ]]; then "$CLUSTER" env; return; fi
  local url
  url="$("$CENTRIFUGO" url)"
  echo "PGOUTBOX_TOPOLOGY=single"
  echo "PGOUTBOX_DATABASE_URL=$PG_URL"
  echo "PGOUTBOX_KAFKA_BROKERS=$KAFKA_BROKERS"
  echo "PGOUTBOX_REPLICATION_FACTOR=1"
  echo "PGOUTBOX_CENTRIFUGO_WS_URL=${url/http:/ws:}/connection/websocket"
  echo "PGOUTBOX_CENTRIFUGO_1_API_URL=$url/api"
  echo "PGOUTBOX_CENTRIFUGO_API_KEY=$("$CENTRIFUGO" apikey)"
}

check_topology() {
  case "$TOPOLOGY" in
    single | cluster) ;;
    *) log "PGOUTBOX_TOPOLOGY=$TOPOLOGY: want single (the default) or cluster"; exit 2 ;;
  esac
}

# Slots created by tests are named it_*; any left after a run is a bug in a test.
leftover_slots() {
  psql "$PG_URL" -Atq -c "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'it\_%'" 2>/dev/null || true
}

# Test tools from Debian's packages: promtool checks the alert rules.
install_test_tools() {
  command -v promtool >/dev/null && return 0
  need_command promtool prometheus
  # The package may start a Prometheus server; the tests only need the tool.
  sudo_cmd service prometheus stop >/dev/null 2>&1 || true
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

# run_cluster_tests runs the fault tests of integration/cluster against the cluster topology,
# started here if it is not running (and then stopped at the end). The tests kill, stop and
# restart the cluster's nodes through cluster.sh.
CLUSTER_STARTED=""
stop_cluster_started() {
  if [[ -n "$CLUSTER_STARTED" ]]; then "$CLUSTER" down || true; fi
}
run_cluster_tests() {
  trap stop_cluster_started EXIT
  if ! "$CLUSTER" status >/dev/null 2>&1; then CLUSTER_STARTED=1; fi
  "$CLUSTER" up >/dev/null
  cd "$ROOT"
  local rc=0
  go test -race -count=1 -tags cluster -timeout 15m ./integration/cluster/ || rc=$?
  local slots
  slots="$(psql "$PG_URL" -Atq -c "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'cl\_%'" 2>/dev/null || true)"
  if [[ -n "$slots" ]]; then
    echo "FAIL: cluster tests left replication slots behind (they pin WAL): $slots" >&2
    rc=1
  fi
  return "$rc"
}

check_topology
case "${1:-}" in
  up) up ;;
  down) down ;;
  env) print_env ;;
  test) run_tests ;;
  test-cluster) run_cluster_tests ;;
  *) echo "usage: $0 up|down|env|test|test-cluster" >&2; exit 2 ;;
esac
