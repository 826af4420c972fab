#!/usr/bin/env bash
# The cluster topology on loopback: what a production fan-out looks like, on one machine.
#
#   deploy/local/cluster.sh up|down|status|env|start NODE|stop NODE|pid NODE|nodes
#
#   3 Kafka brokers    KRaft, each broker and controller; topics get replication factor 3 and
#                      min.insync.replicas=2 (pgoutbox produces with acks=all), so one broker
#                      can die without losing an acknowledged record or stopping the relay
#   Redis              Debian's redis-server, no persistence: Centrifugo's engine (history,
#                      recovery positions, presence, and the PUB/SUB between the nodes)
#   2 Centrifugo nodes deploy/centrifugo/config.yaml with the Redis engine; their Kafka
#                      consumers share one consumer group, so each partition is one node's, as
#                      static members (instance ids centrifugo-1, centrifugo-2): a node restarted
#                      after a crash takes its partitions back at once
#   haproxy            Debian's haproxy, the WebSocket clients' single address in front of both
#                      nodes (health-checked, least connections): two processes on one port
#                      (SO_REUSEPORT), since a process may hold at most its open-files limit
#                      (20,000 here) and every proxied WebSocket takes two
#
# PostgreSQL is the single-node topology's server (deploy/local/postgres.sh): `up` starts it if
# needed; `down` leaves it running (the default topology's `make down` stops it). Every port and
# state directory differs from the single-node services', so both topologies run side by side.
# `up` prints, last, the addresses as KEY=value lines; `env` prints them without starting anything.
#
# NODE is one of: kafka-1 kafka-2 kafka-3 redis centrifugo-1 centrifugo-2 haproxy haproxy-2. `start NODE`
# starts one node again (e.g. after a fault test killed it); `pid NODE` prints its process id.
#
# Environment:
#   PGOUTBOX_STATE_DIR            state directory (default $HOME/.cache/pgoutbox); the cluster
#                                 lives in $STATE/cluster/NODE
#   PGOUTBOX_CLUSTER_PORT_BASE    ports (default 59100): Kafka base+1..3 (controllers base+11..13),
#                                 haproxy (the client WebSocket) base-1000, Centrifugo base-999
#                                 and base-998, Redis base-2721 (56379)
#   PGOUTBOX_CLUSTER_TOPIC        comma-separated topics the Centrifugo nodes consume (default
#                                 outbox,demo_outbox)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
LIB_NAME=cluster.sh
# shellcheck source=deploy/local/lib.sh
source "$HERE/lib.sh"

export PGOUTBOX_STATE_DIR="${PGOUTBOX_STATE_DIR:-$HOME/.cache/pgoutbox}"
CL="$PGOUTBOX_STATE_DIR/cluster"
BASE="${PGOUTBOX_CLUSTER_PORT_BASE:-59100}"
HAPROXY_PORT=$((BASE - 1000))
REDIS_PORT=$((BASE - 2721))
TOPIC="${PGOUTBOX_CLUSTER_TOPIC:-outbox,demo_outbox}"
KAFKA_NODES=(1 2 3)
CENTRIFUGO_NODES=(1 2)

kafka_port() { echo $((BASE + $1)); }
controller_port() { echo $((BASE + 10 + $1)); }
centrifugo_port() { echo $((BASE - 1000 + $1)); }

brokers() {
  local n out=()
  for n in "${KAFKA_NODES[@]}"; do out+=("127.0.0.1:$(kafka_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

voters() {
  local n out=()
  for n in "${KAFKA_NODES[@]}"; do out+=("$n@127.0.0.1:$(controller_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

# --- Kafka -------------------------------------------------------------------------------------

# cluster_id is made once for the cluster and kept: every broker is formatted with it.
cluster_id() {
  local f="$CL/kafka.cluster.id"
  if [[ ! -s "$f" ]]; then
    mkdir -p "$CL"
    PGOUTBOX_KAFKA_HOME="$CL/kafka-1" "$HERE/kafka.sh" tool kafka.tools.StorageTool random-uuid >"$f.tmp"
    mv "$f.tmp" "$f"
  fi
  cat "$f"
}

# The brokers' settings beyond kafka.sh's own, appended to each broker's server.properties.
write_kafka_extra() {
  mkdir -p "$CL"
  cat >"$CL/kafka-extra.properties" <<EOF
# Written by deploy/local/cluster.sh.
# A follower that stops fetching (a broker SIGKILLed or SIGSTOPped) leaves the ISR after this
# long, so acks=all produce requests go on with the other two (Kafka's default is 30 s). It must
# be shorter than the time the relay lets the leader wait for the replicas (half of
# --kafka-request-timeout, which `env` prints as 30s for this topology): a produce request that
# times out has been appended by the leader all the same, beyond the high watermark, where the
# relay's tail read cannot see it; the relay then sends it again, and once the ISR shrinks both
# copies are committed (a duplicate in Kafka, which TestCluster_BrokerLeaderKill caught).
replica.lag.time.max.ms=10000
EOF
}

kafka_env() {
  local n="$1"
  echo PGOUTBOX_KAFKA_HOME="$CL/kafka-$n" \
    PGOUTBOX_KAFKA_PORT="$(kafka_port "$n")" \
    PGOUTBOX_KAFKA_CONTROLLER_PORT="$(controller_port "$n")" \
    PGOUTBOX_KAFKA_NODE_ID="$n" \
    PGOUTBOX_KAFKA_VOTERS="$(voters)" \
    PGOUTBOX_KAFKA_CLUSTER_ID="$(cluster_id)" \
    PGOUTBOX_KAFKA_REPLICATION=3 \
    PGOUTBOX_KAFKA_MIN_ISR=2 \
    PGOUTBOX_KAFKA_SCRAM= \
    PGOUTBOX_KAFKA_EXTRA_PROPERTIES="$CL/kafka-extra.properties"
}

kafka() {
  local n="$1"
  shift
  # shellcheck disable=SC2046 # kafka_env prints NAME=value words without spaces in them
  env $(kafka_env "$n") "$HERE/kafka.sh" "$@"
}

# --- Redis -------------------------------------------------------------------------------------

REDIS_DIR="$CL/redis"
redis_start() {
  need_command redis-server redis-server
  # The package's own server (port 6379) is not ours; a machine with systemd starts it.
  mkdir -p "$REDIS_DIR"
  if pidfile_alive "$REDIS_DIR/redis.pid"; then return 0; fi
  if port_open "$REDIS_PORT"; then port_taken "$REDIS_PORT" "Redis's port" "set PGOUTBOX_CLUSTER_PORT_BASE"; fi
  # No persistence (no RDB snapshot, no AOF): Centrifugo's history is a cache of what Kafka
  # holds, and a restart that forgets it is one of the faults the tests prove clients survive.
  setsid redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$REDIS_DIR" --maxclients 20000 --logfile "$REDIS_DIR/redis.log" \
    </dev/null >/dev/null 2>&1 &
  echo $! >"$REDIS_DIR/redis.pid"
  local i
  for ((i = 0; i < 100; i++)); do
    if [[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; then
      log "Redis on 127.0.0.1:$REDIS_PORT"
      return 0
    fi
    pidfile_alive "$REDIS_DIR/redis.pid" || break
    sleep 0.1
  done
  log "Redis did not answer on 127.0.0.1:$REDIS_PORT; see $REDIS_DIR/redis.log"
  tail -n 20 "$REDIS_DIR/redis.log" >&2 2>/dev/null || true
  exit 1
}

# --- Centrifugo --------------------------------------------------------------------------------

centrifugo() {
  local n="$1"
  shift
  PGOUTBOX_CENTRIFUGO_HOME="$CL/centrifugo-$n" \
    PGOUTBOX_CENTRIFUGO_PORT="$(centrifugo_port "$n")" \
    PGOUTBOX_CENTRIFUGO_KAFKA="$(brokers)" \
    PGOUTBOX_CENTRIFUGO_TOPIC="$TOPIC" \
    PGOUTBOX_CENTRIFUGO_REDIS="redis://127.0.0.1:$REDIS_PORT" \
    PGOUTBOX_CENTRIFUGO_INSTANCE_ID="centrifugo-$n" \
    "$HERE/centrifugo.sh" "$@"
}

# --- haproxy -----------------------------------------------------------------------------------

HAPROXY_DIR="$CL/haproxy"
write_haproxy_config() {
  local n maxconn
  mkdir -p "$HAPROXY_DIR"
  # Each proxied WebSocket holds two descriptors (client and server side) in this one process,
  # which may not open more than its open-files limit.
  maxconn=$((($(ulimit -n) - 200) / 2))
  {
    cat <<EOF
# Written by deploy/local/cluster.sh: the WebSocket clients' one address, in front of every
# Centrifugo node. A node that fails its health check gets no new clients; the clients of a node
# that dies reconnect here and land on a live one, which recovers them from Redis history.
global
  maxconn $maxconn
  log stderr format short local0 warning

defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  # A WebSocket is a tunnel once upgraded: Centrifugo pings every 25 s, so an hour is idle-safe.
  timeout tunnel 1h
  timeout client-fin 5s
  option http-server-close
  # A connection refused by a node that just died is retried on another one.
  retries 3
  option redispatch

frontend websocket
  bind 127.0.0.1:$HAPROXY_PORT
  maxconn $maxconn
  default_backend centrifugo

backend centrifugo
  balance leastconn
  option httpchk GET /health
  default-server inter 1s fall 2 rise 2 maxconn 20000
EOF
    for n in "${CENTRIFUGO_NODES[@]}"; do
      echo "  server centrifugo-$n 127.0.0.1:$(centrifugo_port "$n") check"
    done
  } >"$HAPROXY_DIR/haproxy.cfg"
}

# haproxy_start NAME starts one haproxy process (haproxy or haproxy-2); both bind the same port,
# and the kernel spreads new connections between them (SO_REUSEPORT, haproxy's default).
haproxy_start() {
  local name="$1" pidfile
  pidfile="$(pidfile_of "$name")"
  need_command haproxy haproxy
  write_haproxy_config
  if pidfile_alive "$pidfile"; then return 0; fi
  haproxy -c -q -f "$HAPROXY_DIR/haproxy.cfg" || { log "haproxy rejects $HAPROXY_DIR/haproxy.cfg"; exit 1; }
  # -db: in the foreground of its own session, so the pid file names the process we stop.
  setsid haproxy -db -f "$HAPROXY_DIR/haproxy.cfg" </dev/null >>"$HAPROXY_DIR/$name.log" 2>&1 &
  echo $! >"$pidfile"
  local i
  for ((i = 0; i < 50; i++)); do
    if port_open "$HAPROXY_PORT"; then
      log "$name on 127.0.0.1:$HAPROXY_PORT"
      return 0
    fi
    sleep 0.1
  done
  log "$name does not listen on 127.0.0.1:$HAPROXY_PORT; see $HAPROXY_DIR/$name.log"
  exit 1
}

# --- nodes -------------------------------------------------------------------------------------

NODES=(kafka-1 kafka-2 kafka-3 redis centrifugo-1 centrifugo-2 haproxy haproxy-2)

pidfile_of() {
  case "$1" in
    kafka-[123]) echo "$CL/$1/kafka.pid" ;;
    redis) echo "$REDIS_DIR/redis.pid" ;;
    centrifugo-[12]) echo "$CL/$1/centrifugo.pid" ;;
    haproxy | haproxy-2) echo "$HAPROXY_DIR/$1.pid" ;;
    *) log "no node $1; the nodes are: ${NODES[*]}"; exit 2 ;;
  esac
}

# node_port NODE prints the port NODE listens on (a broker's client port; kafka.sh checks its
# controller port).
node_port() {
  case "$1" in
    kafka-[123]) kafka_port "${1#kafka-}" ;;
    redis) echo "$REDIS_PORT" ;;
    centrifugo-[12]) centrifugo_port "${1#centrifugo-}" ;;
    haproxy | haproxy-2) echo "$HAPROXY_PORT" ;;
  esac
}

# ours NODE PID succeeds when PID is a NODE of this cluster (its state directory, its binary, its
# configuration), whichever checkout started it.
ours() {
  local cmd
  cmd="$(tr '\0' ' ' <"/proc/$2/cmdline" 2>/dev/null)"
  case "$1" in
    kafka-[123]) [[ "$cmd" == *"-Dpgoutbox.kafka.home=$CL/$1 "* ]] ;;
    redis) [[ "$cmd" == redis-server* && "$(readlink "/proc/$2/cwd")" == "$REDIS_DIR" ]] ;;
    centrifugo-[12]) [[ "$(readlink "/proc/$2/exe")" == "$PGOUTBOX_STATE_DIR"/centrifugo/*/centrifugo ]] ;;
    haproxy | haproxy-2) [[ "$cmd" == *"$HAPROXY_DIR/haproxy.cfg"* ]] ;;
    *) return 1 ;;
  esac
}

# reclaim NODE readies NODE for a start. A NODE its pid file names, alive, stays (continued if it
# was left stopped by SIGSTOP). Otherwise whatever holds its port must go: a NODE of this cluster
# that no pid file names (an orphan of a run killed midway, or of another checkout sharing the
# state directory) is stopped; anything else fails the start, naming the process and the fix.
reclaim() {
  local node="$1" f port p live stale=()
  f="$(pidfile_of "$node")"
  if pidfile_alive "$f"; then
    continue_stopped "$node" "$(cat "$f")"
    return 0
  fi
  port="$(node_port "$node")"
  live=" "
  for p in "${NODES[@]}"; do
    pidfile_alive "$(pidfile_of "$p")" && live+="$(cat "$(pidfile_of "$p")") "
  done
  for p in $(port_pids "$port"); do
    [[ "$live" == *" $p "* ]] && continue # a running node (haproxy and haproxy-2 share the port)
    ours "$node" "$p" || port_taken "$port" "$node's port" "set PGOUTBOX_CLUSTER_PORT_BASE to move the cluster's ports"
    log "$node: a stale $(describe_pid "$p") of this cluster holds 127.0.0.1:$port and no pid file names it; stopping it"
    stale+=("$p")
  done
  [[ ${#stale[@]} -eq 0 ]] || stop_pids 30 "${stale[@]}"
}

start_node() {
  reclaim "$1"
  case "$1" in
    kafka-[123]) write_kafka_extra; kafka "${1#kafka-}" start ;;
    redis) redis_start ;;
    centrifugo-[12]) centrifugo "${1#centrifugo-}" start ;;
    haproxy | haproxy-2) haproxy_start "$1" ;;
    *) pidfile_of "$1" ;;
  esac
}

stop_node() {
  case "$1" in
    kafka-[123]) kafka "${1#kafka-}" stop ;;
    centrifugo-[12]) centrifugo "${1#centrifugo-}" stop ;;
    *) stop_pidfile 10 "$(pidfile_of "$1")" ;;
  esac
}

# Raise the open-files limit to the hard limit: every WebSocket client is a descriptor in a
# Centrifugo node and two in haproxy.
raise_nofile() { ulimit -n "$(ulimit -Hn)" 2>/dev/null || true; }

up() {
  raise_nofile
  "$HERE/postgres.sh" start
  write_kafka_extra
  local n
  # A KRaft quorum of three elects a leader only when two controllers run: launch all, then wait.
  for n in "${KAFKA_NODES[@]}"; do reclaim "kafka-$n"; kafka "$n" launch; done
  for n in "${KAFKA_NODES[@]}"; do kafka "$n" wait; done
  for n in redis "${CENTRIFUGO_NODES[@]/#/centrifugo-}" haproxy haproxy-2; do start_node "$n"; done
  print_env
}

down() {
  local node n pids=()
  for node in haproxy-2 haproxy centrifugo-2 centrifugo-1 redis; do stop_node "$node"; done
  # The brokers at once: a broker's clean shutdown needs the KRaft quorum (two of the three
  # controllers), so the last of three stopped one after the other has none, retries its
  # election until stop_pids' 30 s are up and is SIGKILLed (then recovers its logs on the next
  # start).
  for n in "${KAFKA_NODES[@]}"; do
    kafka "$n" stop &
    pids+=($!)
  done
  wait "${pids[@]}"
}

status() {
  local node rc=0
  for node in "${NODES[@]}"; do
    if pidfile_alive "$(pidfile_of "$node")" && pid_stopped "$(cat "$(pidfile_of "$node")")"; then
      echo "$node: stopped by SIGSTOP (pid $(cat "$(pidfile_of "$node")")); \`$0 up\` continues it"
    elif pidfile_alive "$(pidfile_of "$node")"; then
      echo "$node: running (pid $(cat "$(pidfile_of "$node")"))"
    else
      echo "$node: not running"
      rc=1
    fi
  done
  return "$rc"
}

print_env() {
  local n
  echo "PGOUTBOX_TOPOLOGY=cluster"
  echo "PGOUTBOX_DATABASE_URL=$("$HERE/postgres.sh" url)"
  echo "PGOUTBOX_KAFKA_BROKERS=$(brokers)"
  echo "PGOUTBOX_REPLICATION_FACTOR=3"
  # The leader may wait 15 s (half of it) for the in-sync replicas: longer than the brokers'
  # replica.lag.time.max.ms (10 s), so a dead follower leaves the ISR before a request times out.
  echo "PGOUTBOX_KAFKA_REQUEST_TIMEOUT=30s"
  echo "PGOUTBOX_REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
  echo "PGOUTBOX_CENTRIFUGO_WS_URL=ws://127.0.0.1:$HAPROXY_PORT/connection/websocket"
  for n in "${CENTRIFUGO_NODES[@]}"; do
    echo "PGOUTBOX_CENTRIFUGO_${n}_API_URL=http://127.0.0.1:$(centrifugo_port "$n")/api"
  done
  echo "PGOUTBOX_CENTRIFUGO_API_KEY=$("$HERE/centrifugo.sh" apikey)"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  env) print_env ;;
  start) raise_nofile; start_node "${2:?NODE}" ;;
  stop) stop_node "${2:?NODE}" ;;
  pid) f="$(pidfile_of "${2:?NODE}")"; pidfile_alive "$f" && cat "$f" ;;
  nodes) echo "${NODES[*]}" ;;
  *) echo "usage: $0 up|down|status|env|start NODE|stop NODE|pid NODE|nodes" >&2; exit 2 ;;
esac
