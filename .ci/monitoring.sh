#!/usr/bin/env bash
# Monitoring as shipped (docs/monitoring.md): the alerting rules pass `promtool check
# rules` and their unit tests, and a scrape of the MTA taken while it is under load
# passes `promtool check metrics` (Prometheus's own linter of the exposition format).
# Installs Debian's prometheus package (which has promtool) when promtool is missing.
# Uses the release binaries (built by .ci/run before this); loopback only.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
MTA=$TARGET_DIR/release/way2mail-mta
BENCH=$TARGET_DIR/release/way2mail-bench
WORK=$(mktemp -d /tmp/way2mail-monitoring.XXXXXX)
PIDS=()

log() { printf '[monitoring] %s\n' "$*"; }
fail() {
    log "FAIL: $*"
    [[ -f $WORK/mta.log ]] && tail -n 30 "$WORK/mta.log" >&2
    exit 1
}
cleanup() {
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# GET URL [FILE]: the body to FILE (or nowhere); fails unless the answer is 200.
get() {
    python3 - "$@" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
        body = r.read()
except Exception as e:
    sys.exit(f"GET {sys.argv[1]}: {e}")
if len(sys.argv) > 2:
    open(sys.argv[2], "wb").write(body)
PY
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

if ! command -v promtool >/dev/null; then
    [[ $(id -u) == 0 ]] || fail "promtool missing and not root to apt-get install prometheus"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -q
    timeout 600 apt-get install -y -q --no-install-recommends prometheus </dev/null
fi
promtool --version | head -n 1

log "alerting rules"
(cd "$ROOT/docs/monitoring" && promtool check rules alerts.yml && promtool test rules alerts_test.yml)

log "the Grafana dashboard's queries (as recording rules, for promtool's parser)"
python3 - "$ROOT/docs/monitoring/grafana-dashboard.json" "$WORK/dashboard-rules.yml" <<'PY'
import json, sys
dash = json.load(open(sys.argv[1]))
rules = []
for panel in dash["panels"]:
    for target in panel["targets"]:
        expr = target["expr"].replace("$__rate_interval", "5m").replace("$instance", ".*")
        rules.append({"record": f"dashboard:panel{panel['id']}:{target['refId']}", "expr": expr})
json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[2], "w"))
PY
promtool check rules "$WORK/dashboard-rules.yml"

log "a scrape under load"
[[ -x $MTA && -x $BENCH ]] || fail "build the release binaries first (way2mail-mta, way2mail-bench)"
SINK=$(free_port) MX=$(free_port) METRICS=$(free_port)
"$BENCH" sink --listen "127.0.0.1:$SINK" >"$WORK/sink.log" 2>&1 &
PIDS+=($!)
cat >"$WORK/mta.toml" <<CONF
hostname = "mx.monitoring.test"
[[listener]]
address = "127.0.0.1:$MX"
role = "mx"
[tls]
cert = "$WORK/tls/cert.pem"
key = "$WORK/tls/key.pem"
[spool]
path = "$WORK/spool"
key_file = "$WORK/spool.key"
keyring_file = "$WORK/spool.keyring"
[control]
socket = ""
[admin]
socket = ""
[metrics]
listen = "127.0.0.1:$METRICS"
[[route]]
domain = "example.net"
host = "[127.0.0.1]:$SINK"
tls = "none"
CONF
(cd "$WORK" && exec "$MTA" --config "$WORK/mta.toml" 2>"$WORK/mta.log") &
MTA_PID=$!
PIDS+=("$MTA_PID")
deadline=$((SECONDS + 30))
until get "http://127.0.0.1:$METRICS/readyz" 2>/dev/null; do
    kill -0 "$MTA_PID" 2>/dev/null || fail "the MTA exited during startup"
    ((SECONDS < deadline)) || fail "the MTA was not ready within 30 s"
    sleep 0.2
done
timeout 120 "$BENCH" smtp --server "127.0.0.1:$MX" --connections 8 --messages 20000 \
    --json >"$WORK/load.json" 2>&1 &
LOAD_PID=$!
sleep 2
get "http://127.0.0.1:$METRICS/metrics" "$WORK/during.txt" || fail "scrape during the load"
wait "$LOAD_PID" || fail "the load generator failed: $(cat "$WORK/load.json")"
get "http://127.0.0.1:$METRICS/metrics" "$WORK/after.txt" || fail "scrape after the load"
for scrape in during after; do
    promtool check metrics <"$WORK/$scrape.txt" || fail "promtool check metrics on the scrape $scrape the load"
    log "scrape $scrape the load: $(grep -c '^way2mail_' "$WORK/$scrape.txt") samples, promtool clean"
done
accepted=$(awk '/^way2mail_messages_accepted_total\{listener="mx"\}/ {print $2}' "$WORK/after.txt")
[[ ${accepted%.*} -ge 20000 ]] || fail "way2mail_messages_accepted_total is $accepted after 20000 messages"
kill -TERM "$MTA_PID"
wait "$MTA_PID" || fail "the MTA did not stop cleanly"
log "OK"
