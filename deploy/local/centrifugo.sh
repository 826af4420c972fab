#!/usr/bin/env bash
# A local Centrifugo server consuming pgoutbox's topic, for development and the integration tests.
#
#   deploy/local/centrifugo.sh install|start|stop|status|url|pid|bin|apikey
#
# The binary is built from source with `go install` (the network reaches package registries only,
# so there is no release tarball), pinned to one version, and cached in the state directory: the
# first build takes about 2.5 minutes on 2 cores, later starts take a second. The server listens
# on 127.0.0.1 only, with deploy/centrifugo/config.yaml; environment variables set the port, the
# Kafka address and the topic. Every subcommand is safe to run twice.
#
# Environment:
#   PGOUTBOX_STATE_DIR          state directory (default $HOME/.cache/pgoutbox); the server lives
#                               in $STATE/centrifugo
#   PGOUTBOX_CENTRIFUGO_PORT    HTTP port on 127.0.0.1 (default 58000): WebSocket /connection/websocket,
#                               server API /api, health /health
#   PGOUTBOX_KAFKA_PORT         the local Kafka's port (default 59092)
#   PGOUTBOX_CENTRIFUGO_TOPIC   comma-separated topics to consume (default outbox,demo_outbox:
#                               pgoutbox's default --topic and the one of `make demo`)
#   PGOUTBOX_CENTRIFUGO_HOME    the node's directory for its pid file and log (default
#                               $STATE/centrifugo); one per node of a cluster
#   PGOUTBOX_CENTRIFUGO_KAFKA   comma-separated brokers (default 127.0.0.1:$PGOUTBOX_KAFKA_PORT)
#   PGOUTBOX_CENTRIFUGO_REDIS   a Redis address (redis://127.0.0.1:PORT): the Redis engine, so that
#                               several nodes share history and presence; unset: the memory engine
#   PGOUTBOX_CENTRIFUGO_INSTANCE_ID  a stable Kafka consumer-group instance id (static membership):
#                               a node restarted with the same id takes its partitions back at once
#                               instead of after the group's 45 s session timeout; unset: dynamic
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
LIB_NAME=centrifugo.sh
# shellcheck source=deploy/local/lib.sh
source "$HERE/lib.sh"
VERSION=v6.9.1
STATE="${PGOUTBOX_STATE_DIR:-$HOME/.cache/pgoutbox}"
PORT="${PGOUTBOX_CENTRIFUGO_PORT:-58000}"
KAFKA="${PGOUTBOX_CENTRIFUGO_KAFKA:-127.0.0.1:${PGOUTBOX_KAFKA_PORT:-59092}}"
TOPIC="${PGOUTBOX_CENTRIFUGO_TOPIC:-outbox,demo_outbox}"
REDIS="${PGOUTBOX_CENTRIFUGO_REDIS:-}"
# The binary is one per version for every node; pid file and log are the node's.
BINDIR="$STATE/centrifugo/$VERSION"
BIN="$BINDIR/centrifugo"
CDIR="${PGOUTBOX_CENTRIFUGO_HOME:-$STATE/centrifugo}"
CONFIG_SRC="$ROOT/deploy/centrifugo/config.yaml"
PIDFILE="$CDIR/centrifugo.pid"
LOG="$CDIR/centrifugo.log"
READY_TIMEOUT=30

install() {
  [[ -x "$BIN" ]] && return 0
  command -v go >/dev/null || { log "go is needed to build Centrifugo $VERSION; install Go 1.24 or newer"; exit 1; }
  log "building Centrifugo $VERSION into $BINDIR (about 2.5 minutes the first time)"
  mkdir -p "$BINDIR"
  # Outside the repository, so that the build uses Centrifugo's own go.mod, not ours.
  (cd "$BINDIR" && GOBIN="$BINDIR" go install \
    -ldflags "-X github.com/centrifugal/centrifugo/v6/internal/build.Version=${VERSION#v}" \
    "github.com/centrifugal/centrifugo/v6@$VERSION")
  [[ -x "$BIN" ]] || { log "go install finished but $BIN is missing"; exit 1; }
}

running() { pidfile_alive "$PIDFILE"; }

healthy() {
  curl -fsS -o /dev/null "http://127.0.0.1:$PORT/health" 2>/dev/null
}

start() {
  install
  mkdir -p "$CDIR"
  if running; then
    log "already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"
    return 0
  fi
  # A server already on the port would answer the health check below for the one we start.
  if port_open "$PORT"; then port_taken "$PORT" "Centrifugo's port" "set PGOUTBOX_CENTRIFUGO_PORT"; fi
  # The config file as is; Centrifugo's environment variables (they win over the file) set the
  # local port, Kafka, topics and engine (a list variable is space-separated). With Redis the
  # engine keeps history and presence there, and a node's broker publishes through it to every
  # node. setsid: the server must not die with the shell that started it.
  local engine=()
  if [[ -n "$REDIS" ]]; then
    engine=(CENTRIFUGO_ENGINE_TYPE=redis CENTRIFUGO_ENGINE_REDIS_ADDRESS="$REDIS")
  fi
  if [[ -n "${PGOUTBOX_CENTRIFUGO_INSTANCE_ID:-}" ]]; then
    engine+=(CENTRIFUGO_CONSUMERS_PGOUTBOX_KAFKA_INSTANCE_ID="$PGOUTBOX_CENTRIFUGO_INSTANCE_ID")
  fi
  env "${engine[@]}" \
    CENTRIFUGO_HTTP_SERVER_PORT="$PORT" \
    CENTRIFUGO_CONSUMERS_PGOUTBOX_KAFKA_BROKERS="${KAFKA//,/ }" \
    CENTRIFUGO_CONSUMERS_PGOUTBOX_KAFKA_TOPICS="${TOPIC//,/ }" \
    setsid "$BIN" --config "$CONFIG_SRC" >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  wait_http "http://127.0.0.1:$PORT/health" "$READY_TIMEOUT" "$PIDFILE" "$LOG" || exit 1
  log "Centrifugo $VERSION on http://127.0.0.1:$PORT (consuming $TOPIC from $KAFKA${REDIS:+, Redis engine at $REDIS}), log $LOG"
}

# stop: SIGTERM (Centrifugo leaves its consumer group, so the other nodes take its partitions
# at once), SIGKILL after 10 s.
stop() { stop_pidfile 10 "$PIDFILE"; }

status() {
  if running && healthy; then
    echo "Centrifugo running (pid $(cat "$PIDFILE")) on http://127.0.0.1:$PORT"
  else
    echo "Centrifugo not running"
    return 1
  fi
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  url) echo "http://127.0.0.1:$PORT" ;;
  pid) running && cat "$PIDFILE" ;;
  bin) install >&2; echo "$BIN" ;;
  apikey) sed -n 's/^  key: \(.*\)$/\1/p' "$CONFIG_SRC" | head -n 1 ;;
  *) echo "usage: $0 install|start|stop|status|url|pid|bin|apikey" >&2; exit 2 ;;
esac
