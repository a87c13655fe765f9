#!/usr/bin/env bash
# Memory benchmark: what the daemon holds while a large backlog builds up for a
# destination that is down, once idle, after a restart on that spool, and while the
# destination comes back and everything is delivered.
#
#   bench/memory.sh [CONNECTIONS] [SIZE] [IO] [extra way2mail-mta [spool] lines...]
#
# Defaults are the recorded benchmark: 300 connections each sending one message of
# 20 MB (6 GB queued) at once, epoll, the default budgets. The route for the
# recipients' domain points at a closed port (every attempt is deferred); after the
# restart, a SIGHUP moves it to a way2mail-bench sink. Peaks are the kernel's
# high-water mark of the daemon's resident memory (VmHWM); "idle" is VmRSS.
set -euo pipefail

CONNECTIONS=${1:-300}
SIZE=${2:-20000000}
IO=${3:-epoll}
shift $(($# < 3 ? $# : 3))
EXTRA_SPOOL=$(printf '%s\n' "$@")

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
[[ -n ${NO_BUILD:-} ]] || cargo build --release -q -p way2mail-mta -p way2mail-bench
MTA=${MTA:-$ROOT/target/release/way2mail-mta}
BENCH=$ROOT/target/release/way2mail-bench
WORK=$(mktemp -d "$ROOT/target/memory-bench.XXXXXX")
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mib() { awk -v k="$1" 'BEGIN { printf "%d MiB", k / 1024 }'; }
status() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

port=$(free_port)
closed=$(free_port)
sink_port=$(free_port)

config() { # ROUTE_PORT
    cat >"$WORK/mta.toml" <<TOML
[runtime]
io = "$IO"

[[listener]]
address = "127.0.0.1:$port"
role = "mx"

[relay]
domains = ["dest.test"]

[limits]
# The load comes from one address.
max_connections_per_ip = 4096

[spool]
path = "$WORK/var/spool"
key_file = "$WORK/var/spool.key"
$EXTRA_SPOOL

[admin]
socket = "$WORK/var/mta.sock"

[delivery]
retry_initial_secs = 5
retry_max_secs = 5

[shaping]
backoff_after_failures = 1000000

[tls]
cert = "$WORK/var/tls/cert.pem"
key = "$WORK/var/tls/key.pem"

[[route]]
domain = "dest.test"
host = "[127.0.0.1]:$1"
tls = "none"
TOML
}

start() {
    "$MTA" --config "$WORK/mta.toml" 2>>"$WORK/mta.log" &
    MTA_PID=$!
    PIDS+=("$MTA_PID")
    for _ in $(seq 600); do
        (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && return
        sleep 0.1
    done
    echo "the daemon did not start" >&2
    tail "$WORK/mta.log" >&2
    exit 1
}

config "$closed"
start
echo "== $CONNECTIONS connections, one message of $SIZE bytes each, $IO; route down"
"$BENCH" smtp --server "127.0.0.1:$port" --connections "$CONNECTIONS" \
    --messages "$CONNECTIONS" --size "$SIZE" --to-domain dest.test --timeout-secs 600
echo "peak during the load: $(mib "$(status "$MTA_PID" VmHWM)")"
sleep 30
echo "idle 30 s later:      $(mib "$(status "$MTA_PID" VmRSS)")"
kill -TERM "$MTA_PID"
wait "$MTA_PID" || true

start
sleep 30
echo "after a restart (30 s of attempts): peak $(mib "$(status "$MTA_PID" VmHWM)"), now $(mib "$(status "$MTA_PID" VmRSS)")"

"$BENCH" sink --listen "127.0.0.1:$sink_port" >"$WORK/sink.log" 2>&1 &
PIDS+=($!)
config "$sink_port"
kill -HUP "$MTA_PID"
started=$(date +%s)
for _ in $(seq 1800); do
    left=$(awk '/^way2mail_queue_messages\{/ { n += $2 } END { print n + 0 }' \
        < <(curl -s "http://127.0.0.1:9465/metrics" 2>/dev/null || true))
    [[ $left == 0 ]] && break
    sleep 1
done
echo "route up: queue empty after $(($(date +%s) - started)) s; peak $(mib "$(status "$MTA_PID" VmHWM)")"
echo "delivered: $(grep -c ' delivered id=' "$WORK/mta.log" || true) of $CONNECTIONS"
