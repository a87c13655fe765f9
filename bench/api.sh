#!/usr/bin/env bash
# HTTPS API benchmark: what sending through the API costs next to SMTP submission.
# A real way2mail-control holds a tenant `acme` (hourly and daily limits no run
# reaches), its domain acme.example (allowed to send without DNS), an SMTP credential
# app@acme.example and an API key (all made with the way2mail CLI); way2mail-mta
# follows it with a submission listener and an api listener. Then, one after the
# other on loopback against the same daemons, with the same connections, messages,
# size, sender and recipient:
#
#   1. API:  way2mail-bench api, POST /v1/messages (JSON), HTTP/1.1 keep-alive,
#            one TLS connection per request in flight
#   2. SMTP: way2mail-bench smtp, STARTTLS, AUTH PLAIN once per connection,
#            connections kept open (run 4 of bench/submission-auth.sh)
#
# and prints both msgs/s and p99s, and the ratio API msgs/s / SMTP msgs/s.
#
#   bench/api.sh [CONNECTIONS] [MESSAGES] [SIZE] [extra way2mail-bench api args...]
#
# Defaults: 50 connections, 20,000 messages of 5 KB each run (CONNECTIONS, MESSAGES
# and SIZE in the environment also set them; the arguments win). Extra arguments go
# to the API run only, e.g. --http2 to multiplex its requests over
# ceil(50 / --streams-per-connection) connections. Delivery is off: both runs
# measure ingest (every 202 and every 250 comes after the durable, DKIM-signed spool
# write); one message each way before them, not measured, warms the MTA's cache of
# verified credentials. NO_BUILD=1 skips the release build. Each message, API or SMTP, is signed
# the same way; an API message's size is estimated (see `way2mail-bench api --help`).
set -euo pipefail

CONNECTIONS=${1:-${CONNECTIONS:-50}}
MESSAGES=${2:-${MESSAGES:-20000}}
SIZE=${3:-${SIZE:-5120}}
shift $(($# < 3 ? $# : 3))

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
[[ -n ${NO_BUILD:-} ]] ||
    cargo build --release -q -p way2mail-mta -p way2mail-control -p way2mail-cli -p way2mail-bench
BENCH_NAME="api-bench"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

cat >"$WORK/control.toml" <<TOML
socket = "$WORK/control.sock"
store = "$WORK/control"
key_file = "$WORK/control.key"
TOML
start_control
add_tenant acme
password=$(smtp_password acme)
api_key=$(cli --json credential add acme --api --description "bench/api.sh" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')

smtp_port=$(free_port)
api_port=$(free_port)
write_mta_config submission "$smtp_port" api "$api_port"
start_mta "$smtp_port" 1
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$api_port") 2>/dev/null && break
    sleep 0.1
done

FROM=app@acme.example
TO=rcpt1@remote.example
# A field of a way2mail-bench --json line.
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# Not measured: one message each way first, so that the first verification of the key
# and of the password (argon2id, on the MTA's verifier pool) is cached before the runs,
# as it is on a node that has been up a while; otherwise the first requests of the API
# run (every request carries the key) and the AUTHs of the SMTP run wait for it.
WAY2MAIL_BENCH_API_KEY=$api_key "$BIN/way2mail-bench" api --server "127.0.0.1:$api_port" \
    --connections 1 --messages 1 --from "$FROM" --to "$TO" --json "$@" >/dev/null
WAY2MAIL_BENCH_PASSWORD=$password "$BIN/way2mail-bench" smtp --server "127.0.0.1:$smtp_port" \
    --starttls --auth-user "app@acme.example" --connections 1 --messages 1 \
    --from "$FROM" --to-domain "${TO#*@}" --json >/dev/null

echo "== 1. API: POST /v1/messages, $CONNECTIONS in flight, $MESSAGES messages of $SIZE bytes $*"
api=$(WAY2MAIL_BENCH_API_KEY=$api_key "$BIN/way2mail-bench" api --server "127.0.0.1:$api_port" \
    --connections "$CONNECTIONS" --messages "$MESSAGES" --size "$SIZE" \
    --from "$FROM" --to "$TO" --json "$@")
echo "$api"
echo "== 2. SMTP: STARTTLS, AUTH PLAIN once per connection, $CONNECTIONS connections kept open"
smtp=$(WAY2MAIL_BENCH_PASSWORD=$password "$BIN/way2mail-bench" smtp --server "127.0.0.1:$smtp_port" \
    --starttls --auth-user "app@acme.example" --connections "$CONNECTIONS" \
    --messages "$MESSAGES" --size "$SIZE" --from "$FROM" --to-domain "${TO#*@}" --json)
echo "$smtp"

for run in api smtp; do
    [[ $(field "${!run}" failed) == 0 ]] || echo "warning: $run: some messages failed: ${!run}" >&2
done
python3 - "$api" "$smtp" <<'PY'
import json, sys
api, smtp = (json.loads(a) for a in sys.argv[1:3])
print("== API vs SMTP submission")
for name, r in (("API (HTTP/%s)" % api["http"], api), ("SMTP (STARTTLS, AUTH)", smtp)):
    print("%-22s %8.1f msgs/s   p50 %7.2f ms   p99 %7.2f ms   ok %d   failed %d" % (
        name, r["msgs_per_s"], r["p50_ms"], r["p99_ms"], r["ok"], r["failed"]))
ratio = api["msgs_per_s"] / smtp["msgs_per_s"] if smtp["msgs_per_s"] else float("nan")
print("ratio API / SMTP msgs/s: %.2f" % ratio)
PY
echo "== MTA: $(grep -c 'way2mail::api' "$WORK/mta.log") API request log lines"
