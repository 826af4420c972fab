#!/usr/bin/env bash
# Kafka Connect standalone with Debezium's PostgreSQL connector, for the benchmark's side-by-side
# scenario (cmd/pgoutbox-bench, scenario 9) and for anyone who wants to try the same thing by hand.
#
#   deploy/local/debezium.sh install|libdir|versions|run WORKER.properties CONNECTOR.properties
#
# Like deploy/local/kafka.sh, nothing is downloaded as a tarball: Maven resolves the jars from
# deploy/local/debezium/pom.xml (which pins both versions, in one place) into the state directory,
# one directory per pair of versions, and the script runs Connect on the machine's Java. Every
# subcommand is safe to run twice; an interrupted resolution never leaves a half-filled directory.
#
#   install     resolves the jars (once; again only when the pom changes)
#   libdir      installs, then prints the directory of the jars
#   versions    prints "connect <version> debezium <version>"
#   run W C     installs, then runs org.apache.kafka.connect.cli.ConnectStandalone with the worker
#               properties W and the connector properties C in the foreground (exec: the process
#               id is the JVM's), logging at INFO to stdout. The JVM options are those of Kafka's
#               bin/connect-standalone.sh (-Xms256M -Xmx2G, G1). Example, by hand:
#                 worker:    bootstrap.servers=127.0.0.1:59092
#                            key.converter=org.apache.kafka.connect.storage.StringConverter
#                            value.converter=org.apache.kafka.connect.storage.StringConverter
#                            offset.storage.file.filename=/tmp/connect.offsets
#                            listeners=http://127.0.0.1:8083
#                 connector: name=outbox
#                            connector.class=io.debezium.connector.postgresql.PostgresConnector
#                            plugin.name=pgoutput
#                            ... (see cmd/pgoutbox-bench/debezium.go for the benchmark's)
#
# Environment:
#   PGOUTBOX_STATE_DIR          state directory (default $HOME/.cache/pgoutbox); the jars live in
#                               $STATE/debezium/connect-<v>_debezium-<v>/lib
#   PGOUTBOX_DEBEZIUM_HEAP_OPTS the JVM's heap options (default -Xms256M -Xmx2G)
#   JAVA_HOME                   if set, its bin/java runs Connect (Java 17 or newer)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LIB_NAME=debezium.sh
# shellcheck source=deploy/local/lib.sh
source "$HERE/lib.sh"
POM="$HERE/debezium/pom.xml"
STATE="${PGOUTBOX_STATE_DIR:-$HOME/.cache/pgoutbox}"
DDIR="$STATE/debezium"
LOG4J="$DDIR/log4j2.xml"

CONNECT_VERSION="$(pom_property "$POM" connect.version)"
DEBEZIUM_VERSION="$(pom_property "$POM" debezium.version)"
[[ -n "$CONNECT_VERSION" && -n "$DEBEZIUM_VERSION" ]] ||
  { log "no <connect.version> or <debezium.version> property in $POM"; exit 1; }
LIB="$DDIR/connect-${CONNECT_VERSION}_debezium-${DEBEZIUM_VERSION}/lib"

install() {
  # Connect 4 and Debezium 3 are compiled for Java 17.
  need_java17 "Kafka Connect $CONNECT_VERSION and Debezium $DEBEZIUM_VERSION"
  mvn_resolve "$POM" "$LIB" "Kafka Connect $CONNECT_VERSION and Debezium $DEBEZIUM_VERSION" check_classes
}

# check_classes fails when the jars in dir lack a class the benchmark configures: the pom is wrong.
check_classes() {
  local cls missing=""
  for cls in io/debezium/connector/postgresql/PostgresConnector.class \
    io/debezium/transforms/outbox/EventRouter.class \
    org/apache/kafka/connect/cli/ConnectStandalone.class; do
    if ! has_class "$1" "$cls"; then missing="$missing $cls"; fi
  done
  if [[ -n "$missing" ]]; then
    log "the resolved jars lack$missing: fix $POM"
    return 1
  fi
}

# has_class succeeds when one of the jars in dir holds the class file (a jar is a zip: its central
# directory names every entry, so a plain byte search finds it without unzip).
has_class() {
  local dir="$1" cls="$2" j
  for j in "$dir"/*.jar; do
    if grep -qaF "$cls" "$j"; then return 0; fi
  done
  return 1
}

write_log4j() {
  mkdir -p "$DDIR"
  cat >"$LOG4J.tmp.$$" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by deploy/local/debezium.sh. Connect logs at INFO to stdout, as with Kafka's own
     connect-log4j2 configuration; the caller decides where stdout goes. -->
<Configuration status="warn">
  <Appenders>
    <Console name="stdout" target="SYSTEM_OUT"><PatternLayout pattern="[%d] %p %m (%c)%n"/></Console>
  </Appenders>
  <Loggers>
    <Root level="info"><AppenderRef ref="stdout"/></Root>
    <Logger name="org.reflections" level="error"/>
    <Logger name="org.eclipse.jetty" level="warn"/>
  </Loggers>
</Configuration>
EOF
  mv -f "$LOG4J.tmp.$$" "$LOG4J"
}

run() {
  if [[ $# -ne 2 || ! -f "$1" || ! -f "$2" ]]; then
    echo "usage: $0 run WORKER.properties CONNECTOR.properties (both files must exist)" >&2
    exit 2
  fi
  # Resolved already (the pom's checksum matches): skip install's Java check, which starts a JVM
  # of its own, so that a timed run starts Connect at once.
  pom_resolved "$POM" "$LIB" || install
  write_log4j
  # shellcheck disable=SC2086 # the heap options are several words
  exec "$(java_bin)" ${PGOUTBOX_DEBEZIUM_HEAP_OPTS:--Xms256M -Xmx2G} \
    -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$LOG4J" \
    -cp "$LIB/*" org.apache.kafka.connect.cli.ConnectStandalone "$1" "$2"
}

case "${1:-}" in
  install) install ;;
  libdir) install; echo "$LIB" ;;
  versions) echo "connect $CONNECT_VERSION debezium $DEBEZIUM_VERSION" ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 install|libdir|versions|run WORKER.properties CONNECTOR.properties" >&2; exit 2 ;;
esac
