#!/usr/bin/env bash
# `make demo`: the whole pipeline on this machine, live in a browser. Brings PostgreSQL, Kafka and
# Centrifugo up, runs `pgoutbox setup` and `pgoutbox run`, and serves the demo app (cmd/demo: a
# shared task board), then prints the page's address on a line of its own:
#
#   open http://127.0.0.1:8080/
#
# Open it in two windows and edit in either. Ctrl-C stops the app, the relay (cleanly: drain +
# final status update) and the services this script started.
#
# Environment: PGOUTBOX_DEMO_PORT (default 8080) the page's port on 127.0.0.1;
# PGOUTBOX_DEMO_WATCH=1 also prints the records arriving from Kafka (`demo watch`, the terminal
# view); PGOUTBOX_TOPOLOGY=cluster runs it on the cluster topology (deploy/local/cluster.sh: the
# page connects through haproxy to either of two Centrifugo nodes); the PGOUTBOX_* variables of
# pgoutbox.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

export PGOUTBOX_STATE_DIR="${PGOUTBOX_STATE_DIR:-$HOME/.cache/pgoutbox}"
started=()
if [[ "${PGOUTBOX_TOPOLOGY:-single}" == cluster ]]; then
  if ! "$HERE/cluster.sh" status >/dev/null 2>&1; then started+=("$HERE/cluster.sh"); fi
  "$HERE/cluster.sh" up >/dev/null
  # The cluster's addresses (KEY=value lines), unless set already.
  while IFS='=' read -r key value; do
    if [[ -z "${!key:-}" ]]; then export "$key=$value"; fi
  done < <("$HERE/cluster.sh" env)
  export PGOUTBOX_DEMO_CENTRIFUGO_URL="${PGOUTBOX_DEMO_CENTRIFUGO_URL:-${PGOUTBOX_CENTRIFUGO_WS_URL%/connection/websocket}}"
  PGOUTBOX_DEMO_CENTRIFUGO_URL="${PGOUTBOX_DEMO_CENTRIFUGO_URL/ws:/http:}"
fi
export PGOUTBOX_DATABASE_URL="${PGOUTBOX_DATABASE_URL:-$("$HERE/postgres.sh" url)}"
export PGOUTBOX_KAFKA_BROKERS="${PGOUTBOX_KAFKA_BROKERS:-127.0.0.1:${PGOUTBOX_KAFKA_PORT:-59092}}"
export PGOUTBOX_TOPIC="${PGOUTBOX_TOPIC:-demo_outbox}"
export PGOUTBOX_TABLE="${PGOUTBOX_TABLE:-public.demo_outbox}"
export PGOUTBOX_SLOT="${PGOUTBOX_SLOT:-pgoutbox_demo}"
export PGOUTBOX_PUBLICATION="${PGOUTBOX_PUBLICATION:-pgoutbox_demo}"
export PGOUTBOX_LOG_FORMAT="${PGOUTBOX_LOG_FORMAT:-console}"
# The app writes the page's optimistic-update id and the rejected flag in these outbox columns;
# the relay sends them as the pgoutbox-mutation-id and pgoutbox-rejected headers.
export PGOUTBOX_MUTATION_ID_COLUMN="${PGOUTBOX_MUTATION_ID_COLUMN:-mutation_id}"
export PGOUTBOX_REJECTED_COLUMN="${PGOUTBOX_REJECTED_COLUMN:-rejected}"
PORT="${PGOUTBOX_DEMO_PORT:-8080}"
export PGOUTBOX_DEMO_ADDR="127.0.0.1:$PORT"
export PGOUTBOX_DEMO_CENTRIFUGO_URL="${PGOUTBOX_DEMO_CENTRIFUGO_URL:-$("$HERE/centrifugo.sh" url)}"
export PGOUTBOX_DEMO_CENTRIFUGO_CONFIG="${PGOUTBOX_DEMO_CENTRIFUGO_CONFIG:-$ROOT/deploy/centrifugo/config.yaml}"

relay_pid=""
app_pid=""
stop_pid() {
  if [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null; then
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
}
cleanup() {
  trap - INT TERM EXIT
  stop_pid "$app_pid"
  stop_pid "$relay_pid"
  # A demo slot left behind would pin WAL on this machine until someone noticed: drop it (the
  # next `make demo` creates it again). The tables and the topic stay.
  psql "$PGOUTBOX_DATABASE_URL" -q -c "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
    WHERE slot_name = '$PGOUTBOX_SLOT' AND NOT active" >/dev/null 2>&1 || true
  local s
  for s in "${started[@]}"; do
    if [[ "$s" == */cluster.sh ]]; then "$s" down || true; else "$s" stop || true; fi
  done
}
trap cleanup EXIT
trap 'exit 0' INT TERM

if [[ "${PGOUTBOX_TOPOLOGY:-single}" != cluster ]]; then
  if ! "$HERE/postgres.sh" status >/dev/null 2>&1; then "$HERE/postgres.sh" start; started+=("$HERE/postgres.sh"); fi
  if ! "$HERE/kafka.sh" status >/dev/null 2>&1; then "$HERE/kafka.sh" start; started+=("$HERE/kafka.sh"); fi
  # Centrifugo fans the demo's topic out to the pages (docs/fan-out.md).
  if ! "$HERE/centrifugo.sh" status >/dev/null 2>&1; then "$HERE/centrifugo.sh" start; started+=("$HERE/centrifugo.sh"); fi
fi

# The page's Centrifugo client, pinned in deploy/demo/package-lock.json, embedded by the build.
"$ROOT/deploy/demo/npm.sh"
go build -o bin/pgoutbox ./cmd/pgoutbox
go build -o bin/demo ./cmd/demo

bin/pgoutbox setup --partitions 3 # PGOUTBOX_REPLICATION_FACTOR: 3 on the cluster
bin/demo init # the board's tables, and the outbox's mutation_id and rejected columns
bin/pgoutbox run --http-addr "${PGOUTBOX_HTTP_ADDR:-127.0.0.1:9187}" 2> >(trap '' INT TERM; exec sed -u 's/^/[relay] /' >&2) &
relay_pid=$!
bin/demo serve 2> >(trap '' INT TERM; exec sed -u 's/^/[app] /' >&2) &
app_pid=$!

for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "http://$PGOUTBOX_DEMO_ADDR/healthz" 2>/dev/null && break
  kill -0 "$app_pid" 2>/dev/null || { echo "demo.sh: the app exited; see [app] above" >&2; exit 1; }
  sleep 0.1
done
echo "-- relay running (pid $relay_pid), metrics on http://${PGOUTBOX_HTTP_ADDR:-127.0.0.1:9187}/metrics; Ctrl-C stops everything"
echo "open http://$PGOUTBOX_DEMO_ADDR/"
if [[ "${PGOUTBOX_DEMO_WATCH:-}" == 1 ]]; then
  bin/demo watch
else
  wait "$app_pid"
fi
