#!/usr/bin/env bash
# Two way2mail-mta nodes behind Debian's HAProxy, with the shipped configuration
# (deploy/haproxy/way2mail.cfg) as it is, its presetenv values overridden by the
# environment (docs/operations.md, "Several nodes behind HAProxy"):
#   - nodes on 127.0.0.11 and 127.0.0.12, listeners with proxy_from = the balancer
#     (127.0.0.1); HAProxy on 127.0.0.1 with send-proxy-v2 and /readyz checks;
#   - mail sent through HAProxy from 127.0.0.9 (swaks --local-interface) is queued
#     on both nodes, and their logs name 127.0.0.9, never the balancer;
#   - relay follows the client HAProxy names: 127.0.0.9 (trusted) relays,
#     127.0.0.10 gets 5.7.1; implicit TLS (465) and the HTTPS API pass through;
#   - one node drained (way2mail-mta drain): its /readyz answers 503, HAProxy takes
#     it out, and every message goes to the other.
# Installs haproxy and swaks with apt-get when missing. Uses the release build of
# way2mail-mta. Every wait is bounded.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$ROOT/target/release}
WORK=$(mktemp -d /tmp/way2mail-haproxy.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

log() { printf '[haproxy] %s\n' "$*"; }
fail() {
    log "FAIL: $*" >&2
    for f in "$WORK"/haproxy*.log "$WORK"/node*.log; do
        [[ -f $f ]] && { echo "--- $f" >&2; tail -n 40 "$f" >&2; }
    done
    exit 1
}

install_prerequisites() {
    local missing=()
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v swaks >/dev/null || missing+=(swaks)
    command -v curl >/dev/null || missing+=(curl)
    ((${#missing[@]} == 0)) && return
    [[ $(id -u) == 0 ]] || fail "need root to apt-get install ${missing[*]}"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null || {
        timeout 300 apt-get update -q
        timeout 600 apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
    } || fail "apt-get install ${missing[*]} failed"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts node $1 (1 or 2) on 127.0.0.1$1.
start_node() {
    local n=$1 ip=127.0.0.1$1 dir=$WORK/node$1
    mkdir -p "$dir"
    cat >"$dir/mta.toml" <<CONF
hostname = "node$n.way2mail.test"
[[listener]]
address = "$ip:$NODE_MX"
role = "mx"
proxy_from = ["127.0.0.1/32"]
[[listener]]
address = "$ip:$NODE_SUBMISSION"
role = "submission"
proxy_from = ["127.0.0.1/32"]
[[listener]]
address = "$ip:$NODE_SUBMISSIONS"
role = "submissions"
proxy_from = ["127.0.0.1/32"]
[[listener]]
address = "$ip:$NODE_API"
role = "api"
proxy_from = ["127.0.0.1/32"]
[relay]
domains = ["local.test"]
trusted_networks = ["127.0.0.9/32"]
[tls]
cert = "$dir/tls/cert.pem"
key = "$dir/tls/key.pem"
self_signed = true
[spool]
path = "$dir/spool"
key_file = "$dir/spool.key"
min_free_space = 1048576
[delivery]
enabled = false
[control]
# No tenants here: the nodes are ready without a control daemon.
socket = ""
[admin]
socket = "$dir/mta.sock"
[metrics]
listen = "$ip:$NODE_METRICS"
[log]
format = "text"
CONF
    (cd "$dir" && exec "$BIN/way2mail-mta" --config "$dir/mta.toml" 2>"$WORK/node$n.log") &
    PIDS+=($!)
    local deadline=$((SECONDS + 30))
    until curl -fsS "http://$ip:$NODE_METRICS/readyz" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "node $n not ready within 30 s"
        sleep 0.2
    done
}

# Sends one message through HAProxy from $1 to $2; prints swaks' transcript.
send() {
    timeout 60 swaks --server "127.0.0.1:$W2M_MX" --local-interface "$1" \
        --from sender@client.test --to "$2" --header "Subject: via haproxy" \
        --body "through the balancer" --timeout 20 2>&1
}

queued_from() { # node, client ip: how many "message queued" lines name it
    grep -c "message queued.*client_ip=$2" "$WORK/node$1.log" || true
}

main() {
    install_prerequisites
    [[ -x $BIN/way2mail-mta ]] || fail "build the release binaries first ($BIN/way2mail-mta is missing)"
    log "$(haproxy -v | sed -n 1p)"

    NODE_MX=$(free_port) NODE_SUBMISSION=$(free_port) NODE_SUBMISSIONS=$(free_port)
    NODE_API=$(free_port) NODE_METRICS=$(free_port)
    start_node 1
    start_node 2
    log "nodes ready on 127.0.0.11 and 127.0.0.12"

    export W2M_NODE1=127.0.0.11 W2M_NODE2=127.0.0.12 W2M_BIND=127.0.0.1
    export W2M_NODE_MX=$NODE_MX W2M_NODE_SUBMISSION=$NODE_SUBMISSION
    export W2M_NODE_SUBMISSIONS=$NODE_SUBMISSIONS W2M_NODE_API=$NODE_API
    export W2M_NODE_METRICS=$NODE_METRICS
    W2M_MX=$(free_port) W2M_SUBMISSION=$(free_port) W2M_SUBMISSIONS=$(free_port) W2M_API=$(free_port)
    export W2M_MX W2M_SUBMISSION W2M_SUBMISSIONS W2M_API
    haproxy -c -f "$ROOT/deploy/haproxy/way2mail.cfg" >"$WORK/haproxy-check.log" 2>&1 ||
        fail "haproxy -c: $(cat "$WORK/haproxy-check.log")"
    haproxy -db -f "$ROOT/deploy/haproxy/way2mail.cfg" >"$WORK/haproxy.log" 2>&1 &
    HAPROXY_PID=$!
    PIDS+=("$HAPROXY_PID")
    local deadline=$((SECONDS + 20))
    until (echo >"/dev/tcp/127.0.0.1/$W2M_MX") 2>/dev/null; do
        kill -0 "$HAPROXY_PID" 2>/dev/null || fail "haproxy exited"
        ((SECONDS < deadline)) || fail "haproxy not listening within 20 s"
        sleep 0.2
    done
    # Both servers up (the first checks run within a couple of seconds).
    sleep 3

    log "six messages through HAProxy from 127.0.0.9"
    for i in 1 2 3 4 5 6; do
        out=$(send 127.0.0.9 "user$i@local.test") || fail "swaks $i: $out"
        grep -q '<-  250 2.0.0' <<<"$out" || fail "message $i not queued: $out"
    done
    local one two
    one=$(queued_from 1 127.0.0.9) two=$(queued_from 2 127.0.0.9)
    log "queued: node 1 $one, node 2 $two"
    ((one >= 1 && two >= 1 && one + two == 6)) || fail "not spread over both nodes (node 1 $one, node 2 $two)"
    if grep -q 'message queued.*client_ip=127.0.0.1\b' "$WORK"/node?.log; then
        fail "a node logged the balancer as the client"
    fi

    log "relay follows the client HAProxy names"
    out=$(send 127.0.0.9 someone@elsewhere.test) || fail "swaks relay: $out"
    grep -q '<-  250 2.0.0' <<<"$out" || fail "the trusted client could not relay: $out"
    out=$(send 127.0.0.10 someone@elsewhere.test) || true
    grep -q '<\*\* 5[0-9][0-9] 5.7.1' <<<"$out" || fail "an untrusted client relayed: $out"

    log "implicit TLS and the HTTPS API through HAProxy"
    out=$(timeout 60 swaks --server "127.0.0.1:$W2M_SUBMISSIONS" --tls-on-connect \
        --local-interface 127.0.0.9 --quit-after EHLO --timeout 20 2>&1) ||
        fail "implicit TLS through HAProxy: $out"
    grep -q '<~  250' <<<"$out" || fail "no EHLO answer over implicit TLS: $out"
    local code
    code=$(curl -sk --interface 127.0.0.9 -o /dev/null -w '%{http_code}' \
        "https://127.0.0.1:$W2M_API/v1/openapi.json") || true
    [[ $code == 200 ]] || fail "GET /v1/openapi.json through HAProxy: $code"

    log "node 1 drained: HAProxy sends everything to node 2"
    # Its queue stays (delivery is off here), so it keeps running, out of service.
    "$BIN/way2mail-mta" --config "$WORK/node1/mta.toml" drain --keep-running >"$WORK/drain.out" 2>&1 ||
        fail "way2mail-mta drain: $(cat "$WORK/drain.out")"
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.11:$NODE_METRICS/readyz") || true
    [[ $code == 503 ]] || fail "node 1's /readyz answers $code while draining"
    sleep 5 # two failed checks, 2 s apart
    local before
    before=$(queued_from 2 127.0.0.9)
    for i in 1 2 3 4; do
        out=$(send 127.0.0.9 "after$i@local.test") || fail "swaks after failover $i: $out"
        grep -q '<-  250 2.0.0' <<<"$out" || fail "message $i after failover not queued: $out"
    done
    (($(queued_from 2 127.0.0.9) == before + 4)) || fail "node 2 did not take every message"
    log "passed"
}

main "$@"
