#!/usr/bin/env bash
# A private single-node Apache Kafka broker for development and the integration tests.
#
#   deploy/local/kafka.sh install|start|stop|status|wipe|bootstrap|libdir|tool CLASS [ARGS...]
#
# There is no Docker here, and the network reaches only package registries, so the broker is not
# a tarball: Maven resolves its jars from deploy/local/kafka/pom.xml (which pins the version, in
# one place) and the script runs kafka.Kafka on the machine's Java. The node is broker and KRaft
# controller at once, listens on 127.0.0.1 only, and keeps its state in a directory outside the
# repository, so a `git clean` never destroys it and a fresh clone reuses it. Every subcommand is
# safe to run twice.
#
#   tool CLASS ARGS   runs a Kafka command-line class from the same jars, e.g.
#                     kafka.sh tool org.apache.kafka.tools.TopicCommand --bootstrap-server \
#                       "$(kafka.sh bootstrap)" --create --topic t --partitions 3
#
# Environment:
#   PGOUTBOX_STATE_DIR              state directory (default $HOME/.cache/pgoutbox); the broker
#                                   lives in $STATE/kafka
#   PGOUTBOX_KAFKA_PORT             client (PLAINTEXT) port on 127.0.0.1 (default 59092)
#   PGOUTBOX_KAFKA_CONTROLLER_PORT  KRaft controller port on 127.0.0.1 (default: the client port
#                                   + 1, 59093; so a second broker on another client port does not
#                                   clash with the first)
#   PGOUTBOX_KAFKA_READY_TIMEOUT    seconds `start` waits for the broker (default 90; a cold
#                                   start takes 5-10 s, more on a machine busy with other builds)
#   PGOUTBOX_KAFKA_LIB_DIR          where the resolved jars live (default $STATE/kafka/<version>/lib;
#                                   `kafka.sh libdir` prints it)
#   PGOUTBOX_KAFKA_EXTRA_PROPERTIES a file appended to server.properties at every start, e.g. TLS
#                                   and SASL listeners for the tests of secure connections (a key
#                                   given again, like listeners=, replaces the one above it)
#   PGOUTBOX_KAFKA_HOME             the broker's directory (default $STATE/kafka); one per broker
#                                   of a cluster (deploy/local/cluster.sh)
#   PGOUTBOX_KAFKA_NODE_ID          node.id (default 1)
#   PGOUTBOX_KAFKA_VOTERS           a static KRaft quorum, node.id@host:controller-port,... (a
#                                   cluster of several nodes); unset: one node, formatted
#                                   --standalone
#   PGOUTBOX_KAFKA_CLUSTER_ID       the cluster id to format with (every node of a cluster needs
#                                   the same one; default: made once, kept in the broker's directory)
#   PGOUTBOX_KAFKA_REPLICATION      replication factor of new and internal topics (default 1)
#   PGOUTBOX_KAFKA_MIN_ISR          min.insync.replicas (default 1)
#   PGOUTBOX_KAFKA_SCRAM            SCRAM users to create when the storage is formatted (the first
#                                   start, or after a wipe), one per line, in StorageTool's syntax:
#                                   SCRAM-SHA-256=[name=alice,password=alice-secret]
#   JAVA_HOME                       if set, its bin/java runs the broker (Java 17 or newer)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LIB_NAME=kafka.sh
# shellcheck source=deploy/local/lib.sh
source "$HERE/lib.sh"
POM="$HERE/kafka/pom.xml"
STATE="${PGOUTBOX_STATE_DIR:-$HOME/.cache/pgoutbox}"
PORT="${PGOUTBOX_KAFKA_PORT:-59092}"
CPORT="${PGOUTBOX_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}"
KDIR="${PGOUTBOX_KAFKA_HOME:-$STATE/kafka}"
NODE_ID="${PGOUTBOX_KAFKA_NODE_ID:-1}"
VOTERS="${PGOUTBOX_KAFKA_VOTERS:-}"
REPLICATION="${PGOUTBOX_KAFKA_REPLICATION:-1}"
MIN_ISR="${PGOUTBOX_KAFKA_MIN_ISR:-1}"
DATA="$KDIR/data"
PIDFILE="$KDIR/kafka.pid"
LOG="$KDIR/server.log"
OUT="$KDIR/stdout.log"
PROPS="$KDIR/server.properties"
LOG4J="$KDIR/log4j2.xml"
TOOLS_LOG4J="$KDIR/tools-log4j2.xml"
CLUSTER_ID_FILE="$KDIR/cluster.id"
BOOTSTRAP="127.0.0.1:$PORT"
READY_TIMEOUT="${PGOUTBOX_KAFKA_READY_TIMEOUT:-90}"
STOP_TIMEOUT=30

VERSION="$(pom_property "$POM" kafka.version)"
[[ -n "$VERSION" ]] || { log "no <kafka.version> property in $POM"; exit 1; }
# Jars are kept per version: a bump resolves a new set and never mixes jars of two versions.
# PGOUTBOX_KAFKA_LIB_DIR lets a second broker (a test's private one) share the resolved jars.
# The default is under $STATE/kafka even for a cluster's brokers, so every broker shares one set.
LIB="${PGOUTBOX_KAFKA_LIB_DIR:-$STATE/kafka/$VERSION/lib}"

install() {
  need_java17 "Kafka $VERSION"
  mvn_resolve "$POM" "$LIB" "Apache Kafka $VERSION"
}

# pid_alive succeeds when the recorded pid is a live broker started from THIS state directory;
# a recycled pid belonging to another process does not count.
pid_alive() {
  local pid
  [[ -f "$PIDFILE" ]] || return 1
  pid="$(cat "$PIDFILE")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-Dpgoutbox.kafka.home=$KDIR "
}

# tool runs a Kafka command-line class from the resolved jars. A small client JVM tuned to start
# fast; its own log4j2 file keeps tool logging at WARN on stderr instead of log4j's
# "no configuration" complaint.
# TOOL_TIMEOUT (seconds), when set, bounds the run: `timeout` cannot call a shell function itself.
tool() {
  local limit=()
  [[ -n "${TOOL_TIMEOUT:-}" ]] && limit=(timeout "$TOOL_TIMEOUT")
  "${limit[@]}" "$(java_bin)" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$TOOLS_LOG4J" -cp "$LIB/*" "$@"
}

write_config() {
  mkdir -p "$KDIR"
  # Rewritten on every start so a changed port or setting takes effect without a wipe.
  local quorum="controller.quorum.bootstrap.servers=127.0.0.1:$CPORT"
  if [[ -n "$VOTERS" ]]; then quorum="controller.quorum.voters=$VOTERS"; fi
  local txn_isr=$((MIN_ISR < REPLICATION ? MIN_ISR : REPLICATION))
  cat >"$PROPS" <<EOF
# Written by deploy/local/kafka.sh on every start; edits here are lost.
# Each node is both broker and KRaft controller: there is no ZooKeeper in Kafka 4.
process.roles=broker,controller
node.id=$NODE_ID
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
# One node: a dynamic quorum (KIP-853), formatted with --standalone, the way Kafka 4 sets up a
# new cluster. Several nodes (PGOUTBOX_KAFKA_VOTERS): a static quorum of all of them.
$quorum
log.dirs=$DATA

# Replication of new and internal topics (PGOUTBOX_KAFKA_REPLICATION, PGOUTBOX_KAFKA_MIN_ISR).
# One node has exactly one replica of everything; the defaults (3) would leave consumer groups
# and transactions unable to start.
default.replication.factor=$REPLICATION
min.insync.replicas=$MIN_ISR
offsets.topic.replication.factor=$REPLICATION
transaction.state.log.replication.factor=$REPLICATION
transaction.state.log.min.isr=$txn_isr
share.coordinator.state.topic.replication.factor=$REPLICATION
share.coordinator.state.topic.min.isr=$txn_isr
# Few internal partitions: creating the default 50 slows the first consumer group of a test run.
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1

# Tests create their topics explicitly; a typo must fail, not make a new topic.
auto.create.topics.enable=false
num.partitions=1
# Consumers in tests join at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0

# A development broker: keep a day of data, and a small log-cleaner buffer (default 128 MiB of heap).
log.retention.hours=24
log.cleaner.dedupe.buffer.size=33554432
EOF
  if [[ -n "${PGOUTBOX_KAFKA_EXTRA_PROPERTIES:-}" ]]; then
    { echo; echo "# --- appended from $PGOUTBOX_KAFKA_EXTRA_PROPERTIES (PGOUTBOX_KAFKA_EXTRA_PROPERTIES)"
      cat "$PGOUTBOX_KAFKA_EXTRA_PROPERTIES"; } >>"$PROPS"
  fi
  cat >"$LOG4J" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by deploy/local/kafka.sh. The broker logs to one size-bounded file, never to stdout.
     shutdownHook="disable": log4j's own hook would close the log while Kafka's shutdown hook is
     still logging, cutting the end of the shutdown from the log (the file appender flushes every
     line, so nothing is lost without it). -->
<Configuration status="warn" shutdownHook="disable">
  <Appenders>
    <RollingFile name="server" fileName="$LOG" filePattern="$LOG.%i">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
      <SizeBasedTriggeringPolicy size="50 MB"/>
      <DefaultRolloverStrategy max="3"/>
    </RollingFile>
  </Appenders>
  <Loggers>
    <Root level="info"><AppenderRef ref="server"/></Root>
    <!-- Per-request and per-partition-state chatter, as quiet as in Kafka's own config. -->
    <Logger name="kafka.request.logger" level="warn"/>
    <Logger name="kafka.network.RequestChannel\$" level="warn"/>
    <Logger name="state.change.logger" level="warn"/>
  </Loggers>
</Configuration>
EOF
  cat >"$TOOLS_LOG4J" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by deploy/local/kafka.sh for command-line tools: warnings only, on stderr. -->
<Configuration status="warn">
  <Appenders>
    <Console name="stderr" target="SYSTEM_ERR"><PatternLayout pattern="%p %m (%c)%n"/></Console>
  </Appenders>
  <Loggers>
    <Root level="warn"><AppenderRef ref="stderr"/></Root>
  </Loggers>
</Configuration>
EOF
}

# format_storage formats the log directory once. The cluster id is made once and kept beside the
# data, so a wipe followed by a start makes a fresh broker of the same cluster.
format_storage() {
  if [[ -f "$DATA/meta.properties" ]]; then
    return 0
  fi
  if [[ -n "${PGOUTBOX_KAFKA_CLUSTER_ID:-}" ]]; then
    echo "$PGOUTBOX_KAFKA_CLUSTER_ID" >"$CLUSTER_ID_FILE"
  elif [[ ! -s "$CLUSTER_ID_FILE" ]]; then
    tool kafka.tools.StorageTool random-uuid >"$CLUSTER_ID_FILE.tmp"
    mv "$CLUSTER_ID_FILE.tmp" "$CLUSTER_ID_FILE"
  fi
  # In KRaft, SCRAM credentials live in the cluster metadata: the formatter can seed them.
  local out scram=() line
  while IFS= read -r line; do
    if [[ -n "$line" ]]; then scram+=(--add-scram "$line"); fi
  done <<<"${PGOUTBOX_KAFKA_SCRAM:-}"
  local mode=(--standalone)
  if [[ -n "$VOTERS" ]]; then mode=(); fi
  if ! out="$(tool kafka.tools.StorageTool format "${mode[@]}" \
    -t "$(cat "$CLUSTER_ID_FILE")" -c "$PROPS" "${scram[@]}" 2>&1)"; then
    echo "$out" >&2
    log "formatting $DATA failed"
    exit 1
  fi
}

launch() {
  : >"$OUT"
  # setsid: its own session, so a Ctrl-C or hang-up aimed at the caller (a terminal, `go test`)
  # does not reach the broker. stdout/stderr go to a file, never to the caller's pipes: a caller
  # that reads this script's output to EOF would otherwise wait for the broker to exit. 9>&-: the
  # broker must not inherit the start lock. The home property marks the command line as ours.
  setsid "$(java_bin)" -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dpgoutbox.kafka.home="$KDIR" \
    -Dlog4j2.configurationFile="$LOG4J" \
    -cp "$LIB/*" kafka.Kafka "$PROPS" \
    </dev/null >>"$OUT" 2>&1 9>&- &
  echo $! >"$PIDFILE"
}

print_logs() {
  log "last lines of $LOG:"
  tail -n 40 "$LOG" >&2 2>/dev/null || true
  if [[ -s "$OUT" ]]; then
    log "last lines of $OUT:"
    tail -n 20 "$OUT" >&2
  fi
}

# wait_ready waits until the broker really serves clients: the port accepts, the server log says
# startup finished (which in KRaft comes after the broker registered and was unfenced), and an
# ApiVersions round trip through the admin client succeeds.
wait_ready() {
  local deadline=$((SECONDS + READY_TIMEOUT)) pid
  pid="$(cat "$PIDFILE")"
  while ((SECONDS < deadline)); do
    # Plain kill -0, not pid_alive: right after the launch the child may not have exec'd java yet,
    # so its command line is still the shell's.
    if ! kill -0 "$pid" 2>/dev/null; then
      log "the broker exited during startup"
      print_logs
      rm -f "$PIDFILE"
      exit 1
    fi
    if port_open "$PORT" && grep -q "Kafka Server started" "$LOG" 2>/dev/null; then
      if TOOL_TIMEOUT=30 tool org.apache.kafka.tools.BrokerApiVersionsCommand \
        --bootstrap-server "$BOOTSTRAP" >/dev/null 2>&1; then
        return 0
      fi
    fi
    sleep 0.5
  done
  log "not ready after ${READY_TIMEOUT}s"
  print_logs
  # A broker that did not come up in time is wedged; stop it so the next start begins clean.
  stop >/dev/null 2>&1 || true
  exit 1
}

# launch_once launches the broker unless it runs (or is starting) already; it does not wait.
launch_once() {
  install
  mkdir -p "$KDIR"
  # Two starts at once (parallel test packages) must not launch two brokers on one directory.
  exec 9>"$KDIR/.lock"
  flock 9
  # Running, or still starting (another start launched it): the caller waits for it rather
  # than launching another. A broker left stopped (SIGSTOP) is continued first.
  if pid_alive; then
    continue_stopped "the broker of $KDIR" "$(cat "$PIDFILE")"
    return 0
  fi
  rm -f "$PIDFILE"
  if [[ -n "$(leftovers)" ]]; then
    # A broker of this directory whose pid file was lost: restart it rather than calling the
    # port "taken by another process".
    log "a broker from $KDIR runs without a pid file; restarting it"
    stop
  fi
  if port_open "$PORT"; then port_taken "$PORT" "the broker's port" "set PGOUTBOX_KAFKA_PORT"; fi
  if port_open "$CPORT"; then port_taken "$CPORT" "the controller's port" "set PGOUTBOX_KAFKA_CONTROLLER_PORT"; fi
  write_config
  format_storage
  # Keep the previous run's log for a post-mortem; the new run starts a fresh file.
  [[ -f "$LOG" ]] && mv -f "$LOG" "$LOG.prev"
  launch
}

start() {
  if pid_alive && port_open "$PORT"; then
    continue_stopped "the broker of $KDIR" "$(cat "$PIDFILE")"
    log "already running: $BOOTSTRAP"
    return 0
  fi
  launch_once
  wait_ready
  log "ready: $BOOTSTRAP"
}

wait_started() {
  local pid=""
  [[ -f "$PIDFILE" ]] && pid="$(cat "$PIDFILE")"
  if [[ ! "$pid" =~ ^[0-9]+$ ]]; then
    log "not running (start it with \`$0 start\` or \`$0 launch\`)"
    exit 1
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    # Launched, and gone already: say why.
    log "the broker launched from $KDIR (pid $pid) exited during startup"
    print_logs
    rm -f "$PIDFILE"
    exit 1
  fi
  if ! pid_alive && [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == java ]]; then
    log "pid $pid of $PIDFILE is not a broker of $KDIR: $(describe_pid "$pid"); run \`$0 stop\`, then \`$0 start\`"
    exit 1
  fi
  continue_stopped "the broker of $KDIR" "$pid"
  wait_ready
  log "ready: $BOOTSTRAP"
}

# leftovers lists java processes started from this state directory that the pid file does not
# know about (a lost pid file, a start killed midway).
leftovers() {
  local p
  for p in $(pgrep -f -- "-Dpgoutbox.kafka.home=$KDIR " 2>/dev/null || true); do
    [[ "$(cat "/proc/$p/comm" 2>/dev/null)" == java ]] && echo "$p"
  done
  return 0
}

stop() {
  local pids
  pids="$(leftovers)"
  if pid_alive; then
    pids="$(cat "$PIDFILE") $pids"
  fi
  pids="$(echo $pids | tr ' ' '\n' | sort -u | tr '\n' ' ')"
  if [[ -z "${pids// /}" ]]; then
    rm -f "$PIDFILE"
    log "not running"
    return 0
  fi
  # SIGTERM lets Kafka shut down cleanly (no log recovery on the next start, which is slow).
  # shellcheck disable=SC2086 # a list of pids
  stop_pids "$STOP_TIMEOUT" $pids
  rm -f "$PIDFILE"
  log "stopped"
}

status() {
  if pid_alive && port_open "$PORT"; then
    echo "kafka: running, $BOOTSTRAP (pid $(cat "$PIDFILE"), Apache Kafka $VERSION)"
    return 0
  fi
  echo "kafka: not running ($BOOTSTRAP)"
  return 1
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  launch) launch_once ;;
  wait) wait_started ;;
  stop) stop ;;
  status) status ;;
  wipe) stop; rm -rf "$DATA"; log "removed $DATA" ;;
  bootstrap) echo "$BOOTSTRAP" ;;
  libdir) install; echo "$LIB" ;;
  tool) shift; install; mkdir -p "$KDIR"; [[ -f "$TOOLS_LOG4J" ]] || write_config; tool "$@" ;;
  *) echo "usage: $0 install|start|launch|wait|stop|status|wipe|bootstrap|libdir|tool CLASS [ARGS...]" >&2; exit 2 ;;
esac
