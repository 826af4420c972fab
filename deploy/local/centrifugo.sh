#!/usr/bin/env bash
# A local Centrifugo server consuming pgoutbox's topic, for development and the integration tests.
#
#   deploy/local/centrifugo.sh install|start|stop|status|url|bin|apikey
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
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VERSION=v6.9.1
STATE="${PGOUTBOX_STATE_DIR:-$HOME/.cache/pgoutbox}"
PORT="${PGOUTBOX_CENTRIFUGO_PORT:-58000}"
KAFKA="127.0.0.1:${PGOUTBOX_KAFKA_PORT:-59092}"
TOPIC="${PGOUTBOX_CENTRIFUGO_TOPIC:-outbox,demo_outbox}"
CDIR="$STATE/centrifugo"
BINDIR="$CDIR/$VERSION"
BIN="$BINDIR/centrifugo"
CONFIG_SRC="$ROOT/deploy/centrifugo/config.yaml"
PIDFILE="$CDIR/centrifugo.pid"
LOG="$CDIR/centrifugo.log"
READY_TIMEOUT=30

log() { echo "centrifugo.sh: $*" >&2; }

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

running() {
  [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

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
  # The config file as is; Centrifugo's environment variables (they win over the file) set the
  # local port, Kafka and topics (a list variable is space-separated). setsid: the server must not die with the shell that started it.
  CENTRIFUGO_HTTP_SERVER_PORT="$PORT" \
    CENTRIFUGO_CONSUMERS_PGOUTBOX_KAFKA_BROKERS="$KAFKA" \
    CENTRIFUGO_CONSUMERS_PGOUTBOX_KAFKA_TOPICS="${TOPIC//,/ }" \
    setsid "$BIN" --config "$CONFIG_SRC" >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local deadline=$((SECONDS + READY_TIMEOUT))
  until healthy; do
    if ! running; then
      log "Centrifugo exited at start-up; the end of $LOG:"
      tail -n 20 "$LOG" >&2
      rm -f "$PIDFILE"
      exit 1
    fi
    if ((SECONDS > deadline)); then
      log "Centrifugo did not answer /health on 127.0.0.1:$PORT within ${READY_TIMEOUT}s; see $LOG"
      exit 1
    fi
    sleep 0.2
  done
  log "Centrifugo $VERSION on http://127.0.0.1:$PORT (consuming $TOPIC from $KAFKA), log $LOG"
}

stop() {
  if ! running; then
    rm -f "$PIDFILE"
    return 0
  fi
  local pid
  pid="$(cat "$PIDFILE")"
  kill "$pid"
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$PIDFILE"; return 0; }
    sleep 0.1
  done
  log "Centrifugo (pid $pid) did not stop within 10 s; killing it"
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"
}

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
  bin) install >&2; echo "$BIN" ;;
  apikey) sed -n 's/^  key: \(.*\)$/\1/p' "$CONFIG_SRC" | head -n 1 ;;
  *) echo "usage: $0 install|start|stop|status|url|bin|apikey" >&2; exit 2 ;;
esac
