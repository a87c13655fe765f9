#!/usr/bin/env bash
# The HTTPS API as shipped (docs/api.md), against the release daemons:
#   setup     way2mail-control with a tenant (acme, acme.example allowed without DNS)
#             and an API key made with the way2mail CLI; way2mail-mta following it,
#             with an api listener, the self-signed certificate and delivery off (what
#             is queued never leaves the spool);
#   examples  every ```sh block of docs/api.md that starts with `# example (expect NNN)`
#             runs with curl (W2M_API, W2M_CA, W2M_KEY set as the page says) and must
#             answer NNN; at least 4 such blocks must exist;
#   transport HTTP/2 (ALPN h2) and HTTP/1.1 for GET /v1/openapi.json (the same text as
#             mta/src/api/openapi.json) and POST /v1/messages; TLS 1.2 and 1.3 accepted,
#             TLS 1.1 refused, plaintext HTTP on the API port refused;
#   reading   messages bounced, deleted and held with `way2mail queue`: their state in
#             GET /v1/messages/{id}, and GET /v1/events followed page by page
#             (.ci/api/events.py);
#   schemathesis (from PyPI, in a cached virtualenv) against /v1/openapi.json as served:
#             no 5xx, and every status, content type and body as the document says;
#             .ci/api/schemathesis_hooks.py draws the message/rfc822 bodies, and some
#             senders, message ids and cursors are real ones so that requests get past
#             the first refusal;
#   HEAD      answered (405/404) over HTTP/1.1 and HTTP/2 alike;
#   metrics   way2mail_api_requests_total counted no 5xx over the whole run.
# Installs curl, python3 and python3-venv with apt-get when missing. Uses the release
# binaries (built by .ci/run before this); 127.0.0.1 only; every wait is bounded.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release
SCHEMATHESIS_VERSION=4.32.5
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/way2mail-schemathesis
MIN_EXAMPLES=4
WORK=$(mktemp -d /tmp/way2mail-api.XXXXXX)
PIDS=()

log() { printf '[api] %s\n' "$*"; }
fail() {
    log "FAIL: $*" >&2
    local name
    for name in control mta; do
        if [[ -s $WORK/$name.log ]]; then
            echo "--- $name log (last 40 lines) ---" >&2
            tail -n 40 "$WORK/$name.log" >&2
        fi
    done
    exit 1
}
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

install_prerequisites() {
    local missing=()
    if ! command -v curl >/dev/null || ! curl --version | grep -qw HTTP2; then
        missing+=(curl)
    fi
    command -v python3 >/dev/null || missing+=(python3)
    if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        missing+=(python3-venv)
    fi
    if ((${#missing[@]})); then
        [[ $(id -u) == 0 ]] || fail "missing ${missing[*]} and not root to apt-get install them"
        log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        timeout 300 apt-get update -q
        timeout 600 apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
    fi
    curl --version | grep -qw HTTP2 || fail "this curl has no HTTP/2 support: $(curl --version | head -n 1)"
    # The virtualenv is kept between runs; it is rebuilt when the pin changes.
    if [[ $("$VENV/bin/schemathesis" --version 2>/dev/null) != *" $SCHEMATHESIS_VERSION" ]]; then
        log "pip install schemathesis==$SCHEMATHESIS_VERSION into $VENV"
        rm -rf "$VENV"
        mkdir -p "$(dirname "$VENV")"
        timeout 120 python3 -m venv "$VENV" </dev/null || fail "python3 -m venv $VENV failed"
        timeout 600 "$VENV/bin/pip" install -q --disable-pip-version-check \
            "schemathesis==$SCHEMATHESIS_VERSION" </dev/null ||
            fail "pip install schemathesis==$SCHEMATHESIS_VERSION failed"
    fi
    curl --version | head -n 1
    "$VENV/bin/schemathesis" --version
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The current RFC 6238 code for a base32 secret (what an authenticator app shows).
totp() {
    python3 - "$1" <<'PY'
import base64, hashlib, hmac, struct, sys, time
secret = sys.argv[1]
key = base64.b32decode(secret + "=" * (-len(secret) % 8))
digest = hmac.new(key, struct.pack(">Q", int(time.time()) // 30), hashlib.sha1).digest()
offset = digest[-1] & 15
print("%06d" % ((struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF) % 1000000))
PY
}

# FIELD of the JSON object on stdin.
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

cli() { timeout 60 "$BIN/way2mail" "$@" </dev/null; }

# curl against the API with the MTA's certificate; prints "HTTP-VERSION STATUS" and
# leaves the body in $WORK/body.
api_curl() {
    timeout 30 curl -sS --max-time 20 --cacert "$CA" -o "$WORK/body" \
        -w '%{http_version} %{http_code}' "$@"
}

# Fails unless `api_curl ARGS` prints WANT.
expect() { # want description args...
    local want=$1 what=$2 got
    shift 2
    got=$(api_curl "$@" 2>"$WORK/curl.err") || fail "$what: curl failed: $(cat "$WORK/curl.err")"
    [[ $got == "$want" ]] || fail "$what: got '$got', want '$want'; body: $(head -c 2000 "$WORK/body")"
    log "$what: $got"
}

# POST /v1/messages over HTTP/$1 (2 or 1.1), two recipients; prints the queue id.
send_message() {
    local got
    got=$(api_curl "--http$1" "$API/v1/messages" -H "Authorization: Bearer $KEY" \
        -H 'Content-Type: application/json' \
        -d '{"from": "ci@acme.example", "to": ["one@remote.example", "two@remote.example"],
             "subject": "api.sh", "text": "Hello from .ci/api.sh"}') ||
        fail "POST /v1/messages over HTTP/$1: curl failed"
    [[ $got == "$1 202" ]] ||
        fail "POST /v1/messages over HTTP/$1: got '$got', want '$1 202'; body: $(head -c 2000 "$WORK/body")"
    python3 - "$WORK/body" <<'PY' || fail "the 202 body is not {id, recipients, refused}: $(cat "$WORK/body")"
import json, sys
body = json.load(open(sys.argv[1]))
assert isinstance(body["id"], str) and body["id"], body
assert body["recipients"] == ["one@remote.example", "two@remote.example"], body
assert body["refused"] == [], body
print(body["id"])
PY
}

# GET /v1/messages/ID; prints "STATUS STATE STATE..." (the recipients' states).
message_state() {
    local got
    got=$(api_curl "$API/v1/messages/$1" -H "Authorization: Bearer $KEY") || return 1
    [[ $got == *" 200" ]] || return 1
    python3 -c 'import json,sys; m=json.load(sys.stdin); print(m["status"], *[r["state"] for r in m["recipients"]])' \
        <"$WORK/body"
}

started=$SECONDS
install_prerequisites
for b in way2mail-mta way2mail-control way2mail; do
    [[ -x $BIN/$b ]] || fail "build the release binaries first ($BIN/$b is missing)"
done

log "way2mail-control, with a tenant and an API key"
cat >"$WORK/control.toml" <<CONF
socket = "$WORK/control.sock"
store = "$WORK/control"
key_file = "$WORK/control.key"
[mta]
admin_socket = "$WORK/mta.sock"
[metrics]
listen = ""
CONF
(cd "$WORK" && exec "$BIN/way2mail-control" --config "$WORK/control.toml" 2>"$WORK/control.log") &
CONTROL_PID=$!
PIDS+=("$CONTROL_PID")
export WAY2MAIL_SOCKET=$WORK/control.sock WAY2MAIL_TOKEN_FILE=$WORK/token
unset WAY2MAIL_TOKEN
deadline=$((SECONDS + 30))
until [[ -S $WORK/control.sock ]]; do
    kill -0 "$CONTROL_PID" 2>/dev/null || fail "way2mail-control exited during startup"
    ((SECONDS < deadline)) || fail "way2mail-control's socket did not appear within 30 s"
    sleep 0.1
done
password="ci-api-admin-$RANDOM-$RANDOM-password"
totp_secret=$(echo "$password" | timeout 60 "$BIN/way2mail" --json bootstrap --name admin \
    --password-stdin | json_field totp_secret) || fail "way2mail bootstrap"
echo "$password" | timeout 60 "$BIN/way2mail" login --name admin --password-stdin \
    --totp "$(totp "$totp_secret")" >/dev/null || fail "way2mail login"
cli tenant add acme --business-name "Acme Ltd" --contact ops@acme.example \
    --messages-per-hour 100000 --messages-per-day 1000000 >/dev/null || fail "tenant add"
cli domain add acme acme.example >/dev/null || fail "domain add"
# No DNS on loopback to verify it: let it send (it is still DKIM-signed).
cli domain override acme.example --allow --reason ci >/dev/null || fail "domain override"
KEY=$(cli --json credential add acme --api | json_field secret) || fail "credential add --api"
[[ $KEY == w2m_* ]] || fail "the API key does not look like w2m_<prefix>_<secret>"

log "way2mail-mta, with an api listener"
API_PORT=$(free_port) METRICS_PORT=$(free_port)
cat >"$WORK/mta.toml" <<CONF
hostname = "mx.api.test"
[[listener]]
address = "127.0.0.1:$API_PORT"
role = "api"
[relay]
trusted_networks = []
[tls]
cert = "$WORK/tls/cert.pem"
key = "$WORK/tls/key.pem"
self_signed = true
[spool]
path = "$WORK/spool"
key_file = "$WORK/spool.key"
min_free_space = 1048576
[delivery]
# What the API queues stays in the spool; nothing leaves the machine.
enabled = false
[control]
socket = "$WORK/control.sock"
snapshot_file = "$WORK/control-snapshot"
[admin]
socket = "$WORK/mta.sock"
[metrics]
listen = "127.0.0.1:$METRICS_PORT"
[log]
format = "text"
CONF
(cd "$WORK" && exec "$BIN/way2mail-mta" --config "$WORK/mta.toml" 2>"$WORK/mta.log") &
MTA_PID=$!
PIDS+=("$MTA_PID")
API=https://localhost:$API_PORT
CA=$WORK/tls/cert.pem
# The key comes with control's first snapshot; asking before it is installed would
# count failures towards [auth] max_failures.
deadline=$((SECONDS + 30))
until grep -q 'control snapshot installed.*tenants=1' "$WORK/mta.log" 2>/dev/null && [[ -s $CA ]]; do
    kill -0 "$MTA_PID" 2>/dev/null || fail "way2mail-mta exited during startup"
    ((SECONDS < deadline)) || fail "way2mail-mta had no snapshot with the tenant within 30 s"
    sleep 0.2
done
# An empty JSON object is refused (422) only once the key is accepted.
until [[ $(api_curl "$API/v1/messages" -H "Authorization: Bearer $KEY" \
    -H 'Content-Type: application/json' -d '{}' 2>/dev/null) == *" 422" ]]; do
    kill -0 "$MTA_PID" 2>/dev/null || fail "way2mail-mta exited during startup"
    ((SECONDS < deadline)) || fail "POST /v1/messages never got to 422 with the key: $(head -c 2000 "$WORK/body" 2>/dev/null)"
    sleep 0.5
done
log "the MTA takes the key ($API)"

log "the examples of docs/api.md"
mkdir -p "$WORK/examples"
python3 - "$ROOT/docs/api.md" "$WORK/examples" <<'PY' || fail "extracting the examples of docs/api.md"
import os, re, sys
text = open(sys.argv[1], encoding="utf-8").read()
n = 0
for block in re.findall(r"^```sh\n(.*?)^```$", text, re.S | re.M):
    m = re.match(r"# example \(expect (\d{3})\)\n", block)
    if m:
        n += 1
        with open(os.path.join(sys.argv[2], f"{n:02d}-{m.group(1)}.sh"), "w") as f:
            f.write(block)
PY
examples=0
for script in "$WORK"/examples/*.sh; do
    [[ -e $script ]] || continue
    examples=$((examples + 1))
    name=$(basename "$script" .sh)
    want=${name#*-}
    dir=$WORK/examples/run-$name
    mkdir -p "$dir"
    # shellcheck disable=SC2016 # expanded by the inner bash
    got=$(cd "$dir" && W2M_API=$API W2M_CA=$CA W2M_KEY=$KEY body=$dir/body timeout 60 bash -c '
        set -euo pipefail
        curl() { command curl -sS -o "$body" -w "%{http_code}" "$@"; }
        source "$1"' _ "$script" 2>"$dir/stderr") || {
        sed 's/^/    /' "$script" >&2
        fail "docs/api.md example $examples failed to run: $(cat "$dir/stderr")"
    }
    if [[ $got != "$want" ]]; then
        sed 's/^/    /' "$script" >&2
        fail "docs/api.md example $examples: got $got, want $want; body: $(head -c 2000 "$dir/body" 2>/dev/null)"
    fi
    log "example $examples ($(sed -n 2p "$script" | cut -c1-60)...): $got"
done
((examples >= MIN_EXAMPLES)) ||
    fail "docs/api.md has $examples '# example (expect NNN)' blocks; at least $MIN_EXAMPLES expected"

log "HTTP/2 and HTTP/1.1"
expect "2 200" "GET /v1/openapi.json over HTTP/2" --http2 "$API/v1/openapi.json"
cmp -s "$WORK/body" "$ROOT/mta/src/api/openapi.json" ||
    fail "GET /v1/openapi.json is not the text of mta/src/api/openapi.json"
expect "1.1 200" "GET /v1/openapi.json over HTTP/1.1" --http1.1 "$API/v1/openapi.json"
# (fail in a command substitution ends only that subshell, hence the `|| exit 1`.)
BOUNCED=$(send_message 2) || exit 1
log "POST /v1/messages over HTTP/2: 2 202 ($BOUNCED)"
DELETED=$(send_message 1.1) || exit 1
log "POST /v1/messages over HTTP/1.1: 1.1 202 ($DELETED)"
HELD=$(send_message 2) || exit 1
QUEUED=$(send_message 2) || exit 1

log "TLS versions, and no plaintext HTTP"
expect "1.1 200" "TLS 1.2" --http1.1 --tlsv1.2 --tls-max 1.2 "$API/v1/openapi.json"
expect "1.1 200" "TLS 1.3" --http1.1 --tlsv1.3 "$API/v1/openapi.json"
rc=0
# The client side must be willing to speak TLS 1.1 for its refusal to mean anything.
out=$(timeout 30 curl -sS --max-time 20 --cacert "$CA" --tlsv1.1 --tls-max 1.1 \
    --ciphers 'DEFAULT:@SECLEVEL=0' -o /dev/null -w '%{http_code}' "$API/v1/openapi.json" 2>&1) || rc=$?
((rc != 0)) || fail "TLS 1.1 was accepted: $out"
[[ $out != *"no protocols available"* ]] || fail "curl refused to try TLS 1.1 itself: $out"
log "TLS 1.1 refused (curl exit $rc: ${out//$'\n'/ })"
rc=0
out=$(timeout 30 curl -sS --max-time 10 -o /dev/null -w '%{http_code}' \
    "http://127.0.0.1:$API_PORT/v1/openapi.json" 2>&1) || rc=$?
((rc != 0)) || fail "plaintext HTTP on the API port answered: $out"
log "plaintext HTTP refused (curl exit $rc: ${out//$'\n'/ })"

log "reading: messages bounced, deleted and held by the operator"
cli --reason ci queue bounce "$BOUNCED" >/dev/null || fail "way2mail queue bounce $BOUNCED"
cli --reason ci queue delete "$DELETED" >/dev/null || fail "way2mail queue delete $DELETED"
cli --reason ci queue hold "$HELD" >/dev/null || fail "way2mail queue hold $HELD"
for want in "$BOUNCED done bounced bounced" "$DELETED done deleted deleted" \
    "$HELD held pending pending" "$QUEUED queued pending pending"; do
    id=${want%% *}
    deadline=$((SECONDS + 15))
    until [[ "$id $(message_state "$id")" == "$want" ]]; do
        ((SECONDS < deadline)) ||
            fail "GET /v1/messages/$id: want '${want#* }'; got $(head -c 2000 "$WORK/body")"
        sleep 0.5
    done
    log "GET /v1/messages/$id: ${want#* }"
done
# Events show up about two seconds after they happen.
deadline=$((SECONDS + 20))
until events=$(python3 "$ROOT/.ci/api/events.py" "$API" "$CA" "$KEY" \
    "bounced:$BOUNCED" "deleted:$DELETED" 2>"$WORK/events.err"); do
    ((SECONDS < deadline)) || fail "$(cat "$WORK/events.err")"
    sleep 1
done
((events == 4)) || fail "GET /v1/events: $events events, want 4 (2 bounced, 2 deleted)"
CURSOR=$(api_curl "$API/v1/events?limit=1" -H "Authorization: Bearer $KEY" >/dev/null &&
    json_field next <"$WORK/body") || fail "GET /v1/events?limit=1: $(cat "$WORK/body")"
log "GET /v1/events, page by page: the $events events, oldest first, each once"

log "schemathesis $SCHEMATHESIS_VERSION against $API/v1/openapi.json"
# Some generated values are real ones so that requests get past the first refusal:
# the tenant's sender, its messages, a cursor of its feed.
cat >"$WORK/schemathesis.toml" <<CONF
hooks = "$ROOT/.ci/api/schemathesis_hooks.py"
[dictionaries]
senders = { values = ["ci@acme.example", "Acme CI <ci@acme.example>"] }
envelope_senders = { values = ["ci@acme.example"] }
messages = { values = ["$BOUNCED", "$DELETED", "$HELD", "$QUEUED"] }
cursors = { values = ["$CURSOR"] }
[parameters]
"body.from" = { dictionary = "senders", probability = 0.5 }
"query.from" = { dictionary = "envelope_senders", probability = 0.5 }
"path.id" = { dictionary = "messages", probability = 0.5 }
"query.after" = { dictionary = "cursors", probability = 0.5 }
CONF
rc=0
# One worker: hypothesis parses lambdas' source with ast, which Python 3.11 does not
# do safely from several threads ("AST constructor recursion depth mismatch").
(cd "$WORK" && timeout 300 "$VENV/bin/schemathesis" --config-file "$WORK/schemathesis.toml" \
    run "$API/v1/openapi.json" \
    --tls-verify "$CA" \
    --header "Authorization: Bearer $KEY" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
    --max-examples 50 \
    --request-timeout 20 \
    --workers 1 \
    --generation-database none \
    --output-sanitize true \
    --no-color </dev/null) || rc=$?
((rc == 0)) || fail "schemathesis found problems (exit $rc), see above"

log "HEAD"
for version in 1.1 2; do
    expect "$version 405" "HEAD /v1/openapi.json over HTTP/$version" "--http$version" --head \
        "$API/v1/openapi.json"
    expect "$version 404" "HEAD /nowhere over HTTP/$version" "--http$version" --head "$API/nowhere"
done

log "metrics: no 5xx counted"
python3 - "http://127.0.0.1:$METRICS_PORT/metrics" <<'PY' || fail "way2mail_api_requests_total"
import re, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
counts = {}
for line in text.splitlines():
    m = re.match(r'way2mail_api_requests_total\{([^}]*)\} (\S+)$', line)
    if m:
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        counts[(labels.get("endpoint"), labels.get("status"))] = float(m.group(2))
if not counts:
    sys.exit("no way2mail_api_requests_total samples")
print("[api]   " + ", ".join(f"{e} {s}: {int(n)}" for (e, s), n in sorted(counts.items())))
bad = {k: v for k, v in counts.items() if k[1] and k[1].startswith("5") and v > 0}
if bad:
    sys.exit(f"5xx answers counted: {bad}")
PY

kill -TERM "$MTA_PID"
wait "$MTA_PID" || fail "the MTA did not stop cleanly"
kill -TERM "$CONTROL_PID"
wait "$CONTROL_PID" || fail "control did not stop cleanly"
log "OK ($((SECONDS - started)) s)"
