#!/usr/bin/env bash
# Copies per byte: how many times way2mail-mta copies each byte of a message in user
# space, from the socket to the spool (ingest) and from the spool to the next hop
# (delivery). The daemon runs with bench/copies/copycount.c preloaded, which counts
# every memcpy/memmove (Rust's copies, sled's and aws-lc's go through them); the
# counters are read before and after each load, and the difference is divided by the
# body bytes sent. The kernel's own copies (recv, send, pwrite) are not counted.
#
#   bench/copies.sh [SIZE:MESSAGES ...]
#
# Default: 5120:4000 102400:1000 1048576:100. For each size two runs on a fresh
# spool: delivery off (ingest alone) and delivery on to way2mail-bench sink (both);
# their difference is delivery's share. Copies of 4 KiB or more are shown apart:
# they are the ones that move bodies, the rest is bookkeeping (keys, envelopes,
# replies). One connection, so the figures do not depend on scheduling.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=e2e.sh
source "$ROOT/bench/e2e.sh"
e2e_prepare
trap e2e_cleanup EXIT
SHIM=$E2E_WORK/copycount.so
cc -O2 -shared -fPIC -o "$SHIM" "$ROOT/bench/copies/copycount.c" -ldl
COUNTERS=$E2E_WORK/counters

# calls bytes large_calls large_bytes
read_counters() { od -A n -t u8 -v "$COUNTERS" | tr -s ' \n' ' ' | sed 's/^ //'; }

one_run() { # mode(ingest|e2e) size messages
    local mode=$1 size=$2 messages=$3 port before after
    rm -rf "$E2E_WORK/var" "$COUNTERS"
    port=$(e2e_free_port)
    e2e_start_sink "$messages" "$E2E_WORK/sink.json"
    METRICS=off e2e_write_config epoll "$port" "$SINK_PORT"
    if [[ $mode == ingest ]]; then
        sed -i 's/^enabled = true/enabled = false/' "$E2E_WORK/mta.toml"
    fi
    COPYCOUNT_FILE=$COUNTERS LD_PRELOAD=$SHIM "$MTA" --config "$E2E_WORK/mta.toml" \
        2>"$E2E_WORK/mta.log" &
    E2E_MTA_PID=$!
    e2e_wait_port "$port"
    sleep 1
    before=$(read_counters)
    "$BENCH" smtp --server "127.0.0.1:$port" --connections 1 --messages "$messages" \
        --size "$size" --json >"$E2E_WORK/smtp.json"
    if [[ $mode == e2e ]]; then
        wait "$E2E_SINK_PID"
    else
        sleep 1
        kill -KILL "$E2E_SINK_PID"
    fi
    E2E_SINK_PID=
    after=$(read_counters)
    kill -TERM "$E2E_MTA_PID"
    wait "$E2E_MTA_PID" || true
    E2E_MTA_PID=
    awk -v mode="$mode" -v size="$size" -v n="$messages" -v b="$before" -v a="$after" 'BEGIN {
        split(b, x, " "); split(a, y, " "); body = size * n
        printf "%-7s %8d B x %5d   copies/byte %6.2f   of which >= 4 KiB %6.2f   calls/msg %7.0f\n",
            mode, size, n, (y[2] - x[2]) / body, (y[4] - x[4]) / body, (y[1] - x[1]) / n
    }'
}

for spec in "${@:-5120:4000 102400:1000 1048576:100}"; do
    for s in $spec; do
        one_run ingest "${s%%:*}" "${s##*:}"
        one_run e2e "${s%%:*}" "${s##*:}"
    done
done
