#!/usr/bin/env bash
# `make demo`: the whole pipeline on this machine. Brings PostgreSQL and Kafka up, runs
# `pgoutbox setup` and `pgoutbox run`, writes a few hundred events and shows them arriving from
# Kafka. Ctrl-C stops the writer, the relay (cleanly: drain + final status update) and the
# services this script started.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

export PGOUTBOX_STATE_DIR="${PGOUTBOX_STATE_DIR:-$HOME/.cache/pgoutbox}"
export PGOUTBOX_DATABASE_URL="${PGOUTBOX_DATABASE_URL:-$("$HERE/postgres.sh" url)}"
export PGOUTBOX_KAFKA_BROKERS="${PGOUTBOX_KAFKA_BROKERS:-127.0.0.1:${PGOUTBOX_KAFKA_PORT:-59092}}"
export PGOUTBOX_TOPIC="${PGOUTBOX_TOPIC:-demo_outbox}"
export PGOUTBOX_TABLE="${PGOUTBOX_TABLE:-public.demo_outbox}"
export PGOUTBOX_SLOT="${PGOUTBOX_SLOT:-pgoutbox_demo}"
export PGOUTBOX_PUBLICATION="${PGOUTBOX_PUBLICATION:-pgoutbox_demo}"
export PGOUTBOX_LOG_FORMAT="${PGOUTBOX_LOG_FORMAT:-console}"

started=()
if ! "$HERE/postgres.sh" status >/dev/null 2>&1; then "$HERE/postgres.sh" start; started+=("$HERE/postgres.sh"); fi
if ! "$HERE/kafka.sh" status >/dev/null 2>&1; then "$HERE/kafka.sh" start; started+=("$HERE/kafka.sh"); fi
# Centrifugo fans the demo's topic out to WebSocket clients (README "Fan-out to browsers").
if ! "$HERE/centrifugo.sh" status >/dev/null 2>&1; then "$HERE/centrifugo.sh" start; started+=("$HERE/centrifugo.sh"); fi

go build -o bin/pgoutbox ./cmd/pgoutbox
go build -o bin/demo ./cmd/demo

relay_pid=""
cleanup() {
  trap - INT TERM EXIT
  if [[ -n "$relay_pid" ]] && kill -0 "$relay_pid" 2>/dev/null; then
    kill -TERM "$relay_pid" 2>/dev/null || true
    wait "$relay_pid" 2>/dev/null || true
  fi
  # A demo slot left behind would pin WAL on this machine until someone noticed: drop it (the
  # next `make demo` creates it again). The table and topic stay.
  psql "$PGOUTBOX_DATABASE_URL" -q -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
    WHERE slot_name = '$PGOUTBOX_SLOT' AND NOT active" >/dev/null 2>&1 || true
  local s
  for s in "${started[@]}"; do "$s" stop || true; done
}
trap cleanup EXIT
trap 'exit 0' INT TERM

bin/pgoutbox setup --partitions 3
bin/pgoutbox run --http-addr "${PGOUTBOX_HTTP_ADDR:-127.0.0.1:9187}" 2> >(trap '' INT TERM; exec sed -u 's/^/[relay] /' >&2) &
relay_pid=$!
sleep 1
echo "-- relay running (pid $relay_pid); metrics on http://${PGOUTBOX_HTTP_ADDR:-127.0.0.1:9187}/metrics"
bin/demo "$@"
