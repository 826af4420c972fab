# shellcheck shell=bash
# What the scripts of deploy/local share: logging, Debian packages, Java, Maven-resolved jars,
# ports and stopping a process. Sourced, never run:
#
#   LIB_NAME=kafka.sh; source "$HERE/lib.sh"
#
# LIB_NAME prefixes every message (`kafka.sh: ...`). Nothing here starts or stops a service by
# itself; each function does one step and says what went wrong in terms of the script's own
# environment variables.

log() { echo "${LIB_NAME:-deploy/local}: $*" >&2; }

# sudo_cmd runs a command as root: directly when we are root, through sudo otherwise.
sudo_cmd() {
  if [[ "$(id -u)" -ne 0 ]]; then sudo "$@"; else "$@"; fi
}

# apt_install installs Debian packages quietly. A fresh machine has no package lists at all, so
# the first call of a script updates them once.
APT_UPDATED=""
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  if [[ -z "$APT_UPDATED" ]]; then
    sudo_cmd apt-get update -qq
    APT_UPDATED=1
  fi
  sudo_cmd apt-get install -y -qq "$@" >/dev/null
}

# need_command CMD PACKAGE installs Debian's PACKAGE when CMD is not on the PATH.
need_command() {
  command -v "$1" >/dev/null && return 0
  log "installing Debian's $2 ($1 not found)"
  apt_install "$2"
  command -v "$1" >/dev/null || { log "$1 still not found after installing $2"; exit 1; }
}

# java_bin prints the java to run: $JAVA_HOME/bin/java if set, else the one on the PATH.
java_bin() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    echo "$JAVA_HOME/bin/java"
  else
    command -v java
  fi
}

# need_java17 WHAT installs Debian's JRE if there is no java, then checks that it is Java 17 or
# newer: jars compiled for 17 (class file 61) fail on an older java with an
# UnsupportedClassVersionError deep in a log, so say it plainly up front. WHAT names what needs it.
need_java17() {
  if ! java_bin >/dev/null; then
    log "installing Debian's default-jre-headless (java not found)"
    apt_install default-jre-headless
  fi
  local java major
  java="$(java_bin)"
  major="$("$java" -XshowSettings:properties -version 2>&1 |
    sed -n 's/^ *java\.specification\.version = \([0-9.]*\).*/\1/p' | head -n 1)"
  major="${major#1.}"
  major="${major%%.*}"
  if [[ -z "$major" || "$major" -lt 17 ]]; then
    log "$1 needs Java 17 or newer; $java is ${major:-unknown}. Set JAVA_HOME to a newer JDK."
    exit 1
  fi
}

# pom_property POM NAME prints the <NAME> property of a pom: versions are read from the pom and
# never repeated in a script, so a bump is one edit.
pom_property() { sed -n "s:.*<$2>\(.*\)</$2>.*:\1:p" "$1" | head -n 1; }

# pom_resolved POM LIB succeeds when LIB holds the jars of POM as it is now.
pom_resolved() {
  [[ -f "$2/.resolved" && "$(cat "$2/.resolved")" == "$(sha256sum "$1" | cut -d ' ' -f 1)" ]]
}

# mvn_resolve POM LIB WHAT [CHECK] copies the runtime dependencies of POM into LIB with Maven.
# The marker LIB/.resolved holds the pom's checksum: editing the pom (a new dependency, a bump)
# resolves again. The jars go to a scratch directory renamed at the end, so an interrupted
# resolution never leaves a half-filled LIB that looks complete. CHECK, if given, is a function
# called with the scratch directory that fails when the jars are not what the pom should give.
mvn_resolve() {
  local pom="$1" lib="$2" what="$3" check="${4:-}"
  pom_resolved "$pom" "$lib" && return 0
  need_command mvn maven
  log "resolving $what jars with Maven into $lib"
  local tmp="$lib.tmp.$$" out
  rm -rf "$tmp"
  mkdir -p "$(dirname "$lib")"
  # Output is kept for failures only: even with -B -q, Debian's Maven 3.8 prints stray colour
  # resets on success.
  if ! out="$(mvn -B -q -f "$pom" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" 2>&1)"; then
    echo "$out" >&2
    rm -rf "$tmp"
    log "maven could not resolve the $what jars (see above); check that Maven reaches its repository (~/.m2/settings.xml), then run $0 install again"
    exit 1
  fi
  if [[ -n "$check" ]] && ! "$check" "$tmp"; then
    rm -rf "$tmp"
    exit 1
  fi
  sha256sum "$pom" | cut -d ' ' -f 1 >"$tmp/.resolved"
  rm -rf "$lib"
  mv "$tmp" "$lib"
}

# port_open PORT succeeds when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# port_pids PORT prints the ids of the processes listening on 127.0.0.1:PORT (or on every
# address), one a line: several when they share it (SO_REUSEPORT); nothing when ss cannot tell.
port_pids() {
  command -v ss >/dev/null || return 0
  ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -un
}

# describe_pid PID prints "pid PID (its command line)" for a message.
describe_pid() {
  local cmd
  cmd="$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | sed 's/ *$//' | cut -c1-200)"
  echo "pid $1 ($cmd)"
}

# port_taken PORT WHAT FIX fails the script with a message naming what holds 127.0.0.1:PORT: WHAT
# is the port's use ("Redis's port"), FIX the other way out than stopping that process (a
# setting that moves the port).
port_taken() {
  local port="$1" what="$2" fix="$3" pids p who=()
  pids="$(port_pids "$port")"
  for p in $pids; do who+=("$(describe_pid "$p")"); done
  if [[ ${#who[@]} -gt 0 ]]; then
    log "$what 127.0.0.1:$port is taken by $(IFS=,; echo "${who[*]}"); stop it (kill $(echo $pids)) or $fix"
  else
    log "$what 127.0.0.1:$port is taken by another process (see: ss -ltnp 'sport = :$port'); stop it or $fix"
  fi
  exit 1
}

# pid_stopped PID succeeds when PID is stopped (SIGSTOP, e.g. by a fault test killed before it
# could send SIGCONT): it holds its ports and answers nothing, and acts on no signal but SIGKILL
# and SIGCONT.
pid_stopped() {
  [[ "$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null)" == T ]]
}

# continue_stopped WHAT PID sends SIGCONT to PID if it is stopped, saying so.
continue_stopped() {
  if pid_stopped "$2"; then
    log "$1 (pid $2) was stopped (SIGSTOP, left so by a fault test that was killed?); continuing it"
    kill -CONT "$2" 2>/dev/null || true
  fi
}

# pidfile_alive FILE succeeds when FILE names a live process.
pidfile_alive() {
  local pid
  [[ -f "$1" ]] || return 1
  pid="$(cat "$1")"
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# stop_pids SECONDS PID... sends SIGTERM (a clean shutdown: no recovery on the next start),
# waits up to SECONDS for every process to exit, then SIGKILLs the ones that ignored it.
stop_pids() {
  local limit="$1" p i alive
  shift
  [[ $# -gt 0 ]] || return 0
  kill -TERM "$@" 2>/dev/null || true
  # A stopped process (SIGSTOP) acts on the SIGTERM only once it is continued.
  kill -CONT "$@" 2>/dev/null || true
  for ((i = 0; i < limit * 4; i++)); do
    alive=""
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [[ -z "$alive" ]] && return 0
    sleep 0.25
  done
  for p in "$@"; do
    if kill -0 "$p" 2>/dev/null; then
      log "pid $p ignored SIGTERM for ${limit}s; killing it"
      kill -KILL "$p" 2>/dev/null || true
    fi
  done
}

# stop_pidfile SECONDS FILE stops the process FILE names (stop_pids) and removes FILE; nothing
# to do when it is not running.
stop_pidfile() {
  if pidfile_alive "$2"; then
    stop_pids "$1" "$(cat "$2")"
  fi
  rm -f "$2"
}

# wait_http URL SECONDS PIDFILE LOGFILE waits until URL answers 2xx; it fails early, with the
# end of LOGFILE, when the process of PIDFILE exits first.
wait_http() {
  local url="$1" deadline=$((SECONDS + $2)) pidfile="$3" logfile="$4"
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    if ! pidfile_alive "$pidfile"; then
      log "the process exited at start-up; the end of $logfile:"
      tail -n 20 "$logfile" >&2 2>/dev/null || true
      rm -f "$pidfile"
      return 1
    fi
    if ((SECONDS > deadline)); then
      log "no answer from $url within $2 s; see $logfile"
      return 1
    fi
    sleep 0.2
  done
}
