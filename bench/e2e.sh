#!/usr/bin/env bash
# End-to-end benchmark: way2mail-bench smtp -> way2mail-mta (durable spool, delivery
# on, one route `*` -> [127.0.0.1]:SINKPORT, tls none) -> way2mail-bench sink, once per
# I/O backend, on loopback. For each run it prints
#   ingest    msgs/s as the load generator saw it (every 250 after the durable write),
#   drain     seconds from the last 250 until the sink has counted every message,
#   e2e       msgs/s = MESSAGES / (first submit .. last message counted by the sink),
#   CPU       the daemon's user + system time (all threads, /proc/PID/stat) from the
#             first submit until the sink has counted everything, per message, and
#             its minor page faults, its threads' context switches and the KiB it
#             wrote (write and pwrite calls, its logs included) per message.
#
#   bench/e2e.sh [CONNECTIONS] [MESSAGES] [SIZE] [extra way2mail-bench smtp args...]
#
# Defaults are the recorded benchmark: 50 connections, 20,000 messages of 5 KB.
# Environment: BACKENDS (default "io_uring epoll"); SHAPING_CONNECTIONS,
# SHAPING_PER_CONNECTION and SHAPING_BACKOFF_AFTER set [shaping] max_connections,
# max_messages_per_connection and backoff_after_failures (default: the daemon's own
# defaults, 10, 100 and 5). The daemon logs at its default level into a file; its spool
# is fresh for each run, on the same disk as the repo. After each run the daemon's
# shaping warnings (back-off) are shown: they explain a long drain. METRICS=off runs
# the daemon with `[metrics] listen = ""` (no recorder, nothing recorded); the default
# serves metrics on a free loopback port, as a production node would. MTA names another
# daemon binary to measure (e.g. a build of an older commit) and E2E_NO_BUILD=1 skips
# the release build.
#
# bench/compare-postfix.sh sources this file for e2e_prepare and e2e_mta.
set -euo pipefail

E2E_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MTA=${MTA:-$E2E_ROOT/target/release/way2mail-mta}
BENCH=$E2E_ROOT/target/release/way2mail-bench
# No run may hang: the sink gives up (and the run fails) after this long.
E2E_LIMIT_SECS=${E2E_LIMIT_SECS:-900}
E2E_MTA_PID=

e2e_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

e2e_now() { date +%s.%N; }

# Seconds between two e2e_now stamps, and a rate, with three decimals / none.
e2e_secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
e2e_rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }'; }

# A JSON number field from a one-line object (the bench tools print flat JSON).
e2e_field() { # json key
    sed -n "s/.*\"$2\":\([0-9.eE+-]*\).*/\1/p" <<<"$1"
}

e2e_prepare() {
    [[ -n ${E2E_NO_BUILD:-} ]] || (cd "$E2E_ROOT" && cargo build --release -q -p way2mail-mta -p way2mail-bench)
    E2E_WORK=$(mktemp -d "$E2E_ROOT/target/e2e-bench.XXXXXX")
}

e2e_cleanup() {
    if [[ -n $E2E_MTA_PID ]]; then kill -KILL "$E2E_MTA_PID" 2>/dev/null || true; fi
    if [[ -n ${E2E_SINK_PID:-} ]]; then kill -KILL "$E2E_SINK_PID" 2>/dev/null || true; fi
    if [[ -n ${E2E_WORK:-} ]]; then rm -rf "$E2E_WORK"; fi
}

e2e_write_config() { # io port sinkport
    local shaping="" metrics
    if [[ ${METRICS:-on} == off ]]; then
        metrics='""'
    else
        metrics="\"127.0.0.1:$(e2e_free_port)\""
    fi
    [[ -n ${SHAPING_CONNECTIONS:-} ]] && shaping+="max_connections = $SHAPING_CONNECTIONS"$'\n'
    [[ -n ${SHAPING_PER_CONNECTION:-} ]] &&
        shaping+="max_messages_per_connection = $SHAPING_PER_CONNECTION"$'\n'
    [[ -n ${SHAPING_BACKOFF_AFTER:-} ]] &&
        shaping+="backoff_after_failures = $SHAPING_BACKOFF_AFTER"$'\n'
    cat >"$E2E_WORK/mta.toml" <<TOML
[runtime]
io = "$1"

[[listener]]
address = "127.0.0.1:$2"
role = "mx"

[spool]
path = "$E2E_WORK/var/spool"
key_file = "$E2E_WORK/var/spool.key"

[admin]
socket = "$E2E_WORK/var/mta.sock"

[metrics]
listen = $metrics

[tls]
cert = "$E2E_WORK/var/tls/cert.pem"
key = "$E2E_WORK/var/tls/key.pem"

[delivery]
enabled = true
log_file = "$E2E_WORK/var/delivery.log"

[shaping]
$shaping
[[route]]
domain = "*"
host = "[127.0.0.1]:$3"
tls = "none"
TOML
}

# User and system CPU of a process and all its threads so far, in clock ticks, its
# minor page faults, its threads' context switches (those that ended so far are not
# counted: the daemon's threads live as long as it does) and the bytes it wrote to
# files. Prints "USER SYSTEM FAULTS SWITCHES WRITTEN".
e2e_cpu_ticks() { # pid
    # Fields 14, 15 and 10 of /proc/PID/stat; the name in parentheses may hold spaces.
    local stat switches
    stat=$(sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12, $13, $8 }')
    switches=$(cat /proc/"$1"/task/*/status 2>/dev/null |
        awk '/_ctxt_switches:/ { n += $2 } END { print n + 0 }')
    echo "$stat $switches $(awk '/^wchar:/ { print $2 }' "/proc/$1/io")"
}

# Prints the daemon's CPU and the rest per message between two e2e_cpu_ticks samples;
# sets E2E_CPU_US.
e2e_cpu_report() { # before after messages
    local cpu user system faults switches written
    cpu=$(awk -v a="$1" -v b="$2" -v hz="$(getconf CLK_TCK)" -v n="$3" 'BEGIN {
        split(a, x, " "); split(b, y, " "); k = 1e6 / hz / n
        u = (y[1] - x[1]) * k; s = (y[2] - x[2]) * k
        printf "%.0f %.0f %.0f %.1f %.1f %.1f", u + s, u, s, (y[3] - x[3]) / n,
            (y[4] - x[4]) / n, (y[5] - x[5]) / n / 1024 }')
    read -r E2E_CPU_US user system faults switches written <<<"$cpu"
    echo "    daemon CPU (every thread): $E2E_CPU_US µs per message" \
        "(user $user, system $system); per message $faults page faults," \
        "$switches context switches, $written KiB written"
}

e2e_wait_port() { # port
    local _
    for _ in $(seq 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nothing listening on 127.0.0.1:$1 after 10 s" >&2
    return 1
}

# Starts the sink for MESSAGES messages on a fresh port; sets SINK_PORT, E2E_SINK_PID.
e2e_start_sink() { # messages output-file
    SINK_PORT=$(e2e_free_port)
    timeout "$E2E_LIMIT_SECS" "$BENCH" sink --listen "127.0.0.1:$SINK_PORT" \
        --exit-after-messages "$1" --json >"$2" 2>&1 &
    E2E_SINK_PID=$!
    e2e_wait_port "$SINK_PORT"
}

# Sends the load to PORT while the sink counts; prints the three figures with LABEL and
# sets E2E_RESULT="ingest drain e2e" (msgs/s, s, msgs/s). The sink must be started.
e2e_measure() { # label port connections messages size [smtp args...]
    local label=$1 port=$2 connections=$3 messages=$4 size=$5 start sent done status=0
    shift 5
    start=$(e2e_now)
    local smtp
    smtp=$("$BENCH" smtp --server "127.0.0.1:$port" --connections "$connections" \
        --messages "$messages" --size "$size" --json "$@")
    sent=$(e2e_now)
    wait "$E2E_SINK_PID" || status=$?
    done=$(e2e_now)
    E2E_SINK_PID=
    ((status == 0)) || {
        echo "$label: the sink did not count $messages messages within ${E2E_LIMIT_SECS} s" >&2
        return 1
    }
    local ok ingest drain total
    ok=$(e2e_field "$smtp" ok)
    [[ $ok == "$messages" ]] || {
        echo "$label: only $ok of $messages accepted: $smtp" >&2
        return 1
    }
    ingest=$(e2e_rate "$messages" "$(e2e_secs "$start" "$sent")")
    drain=$(e2e_secs "$sent" "$done")
    total=$(e2e_rate "$messages" "$(e2e_secs "$start" "$done")")
    printf '%-22s ingest %6s msgs/s   drain %7s s   end to end %6s msgs/s (%s s)\n' \
        "$label:" "$ingest" "$drain" "$total" "$(e2e_secs "$start" "$done")"
    E2E_RESULT="$ingest $drain $total"
}

# One end-to-end run through way2mail-mta with a fresh spool.
e2e_mta() { # io connections messages size [smtp args...]
    local io=$1 connections=$2 messages=$3 size=$4 port
    shift 4
    rm -rf "$E2E_WORK/var"
    port=$(e2e_free_port)
    e2e_start_sink "$messages" "$E2E_WORK/sink-$io.json"
    e2e_write_config "$io" "$port" "$SINK_PORT"
    "$MTA" --config "$E2E_WORK/mta.toml" 2>"$E2E_WORK/mta-$io.log" &
    E2E_MTA_PID=$!
    e2e_wait_port "$port"
    local cpu_before cpu_after
    cpu_before=$(e2e_cpu_ticks "$E2E_MTA_PID")
    e2e_measure "way2mail-mta ($io)" "$port" "$connections" "$messages" "$size" "$@"
    cpu_after=$(e2e_cpu_ticks "$E2E_MTA_PID")
    e2e_cpu_report "$cpu_before" "$cpu_after" "$messages"
    kill -TERM "$E2E_MTA_PID"
    wait "$E2E_MTA_PID"
    E2E_MTA_PID=
    local delivered
    delivered=$(grep -c '"outcome":"delivered"' "$E2E_WORK/var/delivery.log" || true)
    echo "    delivery log: $delivered delivered," \
        "$(grep -vc '"outcome":"delivered"' "$E2E_WORK/var/delivery.log" || true) other lines"
    grep -E 'backing off|recovering' "$E2E_WORK/mta-$io.log" | sed 's/^/    /' || true
}

e2e_main() {
    local connections=${1:-50} messages=${2:-20000} size=${3:-5120} io
    shift $(($# < 3 ? $# : 3))
    e2e_prepare
    trap e2e_cleanup EXIT
    echo "== $connections connections, $messages messages of $size bytes $*" \
        "(shaping: ${SHAPING_CONNECTIONS:-default} connections," \
        "${SHAPING_PER_CONNECTION:-default} messages per connection," \
        "back-off after ${SHAPING_BACKOFF_AFTER:-default} failures)"
    for io in ${BACKENDS:-io_uring epoll}; do
        e2e_mta "$io" "$connections" "$messages" "$size" "$@"
    done
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    e2e_main "$@"
fi
