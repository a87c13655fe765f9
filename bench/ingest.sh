#!/usr/bin/env bash
# Ingest benchmark: way2mail-bench smtp -> way2mail-mta (durable, encrypted spool),
# once per I/O backend, on loopback. Prints msgs/s and latency for each run.
#
#   bench/ingest.sh [CONNECTIONS] [MESSAGES] [SIZE] [extra way2mail-bench smtp args...]
#
# Defaults are the recorded benchmark: 50 connections, 20,000 messages of 5 KB,
# keep-alive. The daemon runs with the default log level (info: a line per message
# and per connection) into a file, with a fresh spool on the same disk as the repo.
# Delivery is off: this measures ingest alone (bench/e2e.sh measures both). After each
# run the daemon's CPU per message (user and system, all threads), page faults,
# context switches and KiB written per message are printed, as bench/e2e.sh does.
set -euo pipefail

CONNECTIONS=${1:-50}
MESSAGES=${2:-20000}
SIZE=${3:-5120}
shift $(($# < 3 ? $# : 3))

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
[[ -n ${NO_BUILD:-} ]] || cargo build --release -q -p way2mail-mta -p way2mail-bench
MTA=${MTA:-$ROOT/target/release/way2mail-mta}
BENCH=$ROOT/target/release/way2mail-bench
# For e2e_cpu_ticks and e2e_cpu_report.
# shellcheck source=bench/e2e.sh
source "$ROOT/bench/e2e.sh"
WORK=$(mktemp -d "$ROOT/target/ingest-bench.XXXXXX")
PID=
trap '[[ -n $PID ]] && kill -KILL $PID 2>/dev/null; rm -rf "$WORK"' EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
for io in io_uring epoll; do
    rm -rf "$WORK/var"
    cat >"$WORK/mta.toml" <<TOML
[runtime]
io = "$io"

[[listener]]
address = "127.0.0.1:$port"
role = "mx"

[spool]
path = "$WORK/var/spool"
key_file = "$WORK/var/spool.key"

[admin]
socket = "$WORK/var/mta.sock"

[delivery]
enabled = false

[tls]
cert = "$WORK/var/tls/cert.pem"
key = "$WORK/var/tls/key.pem"
TOML
    "$MTA" --config "$WORK/mta.toml" 2>"$WORK/mta-$io.log" &
    PID=$!
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
        sleep 0.1
    done
    echo "== $io: $CONNECTIONS connections, $MESSAGES messages of $SIZE bytes $*"
    before=$(e2e_cpu_ticks "$PID")
    "$BENCH" smtp --server "127.0.0.1:$port" --connections "$CONNECTIONS" \
        --messages "$MESSAGES" --size "$SIZE" "$@"
    e2e_cpu_report "$before" "$(e2e_cpu_ticks "$PID")" "$MESSAGES"
    kill -TERM $PID
    wait $PID
    PID=
    grep -o 'flushes=[0-9]* commits=[0-9]*' "$WORK/mta-$io.log" | sed 's/^/group commit: /'
done
