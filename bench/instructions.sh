#!/usr/bin/env bash
# Instructions per message, by stage: way2mail-mta runs under valgrind's callgrind
# (release build, epoll, delivery on to way2mail-bench sink, metrics off), its
# counters are zeroed once it listens, MESSAGES messages of SIZE bytes go through
# end to end over CONNECTIONS connections, and the counters are dumped. Instruction
# counts do not depend on how busy the machine is, so two builds compare exactly;
# they are not time (a cache miss or a system call costs more than it counts).
#
#   bench/instructions.sh [MESSAGES] [SIZE] [CONNECTIONS]     # default 2000 5120 10
#
# MTA names another daemon binary (e.g. a build of an older commit);
# `bench/instructions.sh --table DUMP MESSAGES [SIZE CONNECTIONS]` prints the table of
# a kept dump again. Needs valgrind
# (Debian's `valgrind` package). The dump is kept as target/instructions.callgrind
# for callgrind_annotate.
set -euo pipefail

# The table for a callgrind dump of MESSAGES messages (also: --table DUMP MESSAGES).
table() { # dump messages size connections
    local dump=$1 messages=$2 annotated
    annotated=$(mktemp)
    callgrind_annotate --auto=no --inclusive=yes "$dump" >"$annotated" 2>/dev/null
    # The largest inclusive count among the functions whose line matches PATTERN (a
    # function inlined into several places is listed once per place), per message.
    per_message() { # label pattern
        { grep -E "$2" "$annotated" || true; } | awk -v n="$messages" -v l="$1" '
            { gsub(",", "", $1); if ($1 + 0 > max) max = $1 + 0 }
            END { printf "%-44s %9.0f\n", l, max / n }'
    }
    echo "== $messages messages of $3 bytes end to end, $4 connections: instructions per message"
    per_message "total (every thread of the daemon)" "PROGRAM TOTALS"
    per_message "sessions (SMTP in, unstuffing, sealing)" "runtime::Worker::handle::"
    per_message "  of which the SMTP protocol" "server::protocol::Protocol::next_event"
    per_message "  of which sealing a message held whole" "Spool::seal_new_message"
    per_message "  of which spooling one received in parts" "Spool::enqueue_from_parts"
    per_message "group commit (flusher thread)" "queue/src/commit.rs:"
    per_message "  of which sled's apply_batch" "sled::tree::Tree::apply_batch"
    per_message "scheduler thread (leases, completions)" "delivery/scheduler.rs:|delivery/start.rs:"
    per_message "delivery connections (SMTP out)" "Worker::connect_and_deliver::"
    per_message "  of which reading bodies from the spool" "Spool>::read_whole_body"
    per_message "scanning content for its shape (in or out)" "ContentScan::push"
    per_message "delivery log writer thread" "delivery/log.rs:"
    per_message "log lines, wherever written" "tracing_core::event::Event::dispatch"
    rm -f "$annotated"
}

if [[ ${1:-} == --table ]]; then
    table "$2" "$3" "${4:-?}" "${5:-?}"
    exit 0
fi

MESSAGES=${1:-2000}
SIZE=${2:-5120}
CONNECTIONS=${3:-10}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=e2e.sh
source "$ROOT/bench/e2e.sh"
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
e2e_prepare
trap e2e_cleanup EXIT
OUT=$E2E_WORK/callgrind.out
E2E_LIMIT_SECS=${E2E_LIMIT_SECS:-900}

port=$(e2e_free_port)
e2e_start_sink "$MESSAGES" "$E2E_WORK/sink.json"
METRICS=off e2e_write_config epoll "$port" "$SINK_PORT"
valgrind --tool=callgrind --callgrind-out-file="$OUT" "$MTA" --config "$E2E_WORK/mta.toml" \
    2>"$E2E_WORK/mta.log" &
E2E_MTA_PID=$!
e2e_wait_port "$port"
sleep 3
callgrind_control -z "$E2E_MTA_PID" >/dev/null
"$BENCH" smtp --server "127.0.0.1:$port" --connections "$CONNECTIONS" --messages "$MESSAGES" \
    --size "$SIZE" --json >"$E2E_WORK/smtp.json"
wait "$E2E_SINK_PID"
E2E_SINK_PID=
callgrind_control -d "$E2E_MTA_PID" >/dev/null
kill -TERM "$E2E_MTA_PID"
wait "$E2E_MTA_PID" || true
E2E_MTA_PID=
DUMP=$(ls "$OUT".* | head -1)
cp "$DUMP" "$ROOT/target/instructions.callgrind"
table "$DUMP" "$MESSAGES" "$SIZE" "$CONNECTIONS"
