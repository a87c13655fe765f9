#!/usr/bin/env bash
# Interoperability of the release daemon with independent tools, for each I/O backend:
#   swaks    plain to mx, STARTTLS (--tls) to submission, implicit TLS (--tlsc) to
#            submissions, each verifying the daemon's self-signed certificate;
#   openssl  s_client: TLS 1.1 refused, TLS 1.2 and 1.3 accepted, on STARTTLS and on
#            implicit TLS;
#   testssl  --protocols on both TLS listeners: SSLv2, SSLv3, TLS 1.0, TLS 1.1 not offered;
# then SIGTERM must give exit status 0 and `spool list` must show the swaks messages.
# Then outbound delivery against Postfix's smtp-sink (Debian's postfix package, installed
# with "No configuration" and never started) as the receiving server, for each backend:
# a route `*` points at smtp-sink and one message per case goes through the daemon while
# smtp-sink runs with one of its fault or feature options:
#   delivered  default; -p (no PIPELINING); -e (no ESMTP: EHLO refused, HELO fallback);
#              -P (PIX-mangled greeting, no ESMTP); -N (no DSN); -8 -E (no 8BITMIME, no
#              ENHANCEDSTATUSCODES)
#   deferred   -r RCPT and -r . (4xx); -Q MAIL (421 and disconnect); -q RCPT and -q .
#              (disconnect without a reply)
#   bounced    -f RCPT and -f . (5xx); the notice must reach a second smtp-sink that
#              receives mail for the sender's domain
# The outcome is read from the delivery log (`[delivery] log_file`), arrival from
# smtp-sink's dump file (-D) and counters (-c); at the end `spool list` must hold exactly
# the deferred messages, each `pending attempts=1` with the reply it got.
# Then DKIM: the Rust test `dkimpy_verifies_what_the_mta_signs` (tests/tests/dkim_signing.rs)
# signs tenant mail through the real control and MTA daemons, and dkimpy (from PyPI, in a
# virtualenv, with dnspython for the stub DNS) must verify every DKIM-Signature
# (rsa-sha256 and ed25519-sha256) and reject them after the body changed.
# Runs as root on a bare Debian bookworm (installs its tools with apt-get); only
# 127.0.0.1 is used; every wait is bounded.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/way2mail-mta
SENDER=interop@example.org
DAEMON_PID=
SMTP_SINK_PIDS=()
WORK_DIRS=()

log() { printf '==> %s\n' "$*"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

cleanup() {
    local status=$?
    if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -KILL "$DAEMON_PID" 2>/dev/null || true
    fi
    local pid
    for pid in "${SMTP_SINK_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    if ((status != 0)) && [[ -n ${CURRENT_DIR:-} && -f $CURRENT_DIR/daemon.log ]]; then
        echo "--- daemon log ($CURRENT_DIR/daemon.log) ---" >&2
        tail -n 80 "$CURRENT_DIR/daemon.log" >&2 || true
    fi
    if ((${#WORK_DIRS[@]})); then rm -rf "${WORK_DIRS[@]}"; fi
    exit "$status"
}
trap cleanup EXIT

install_tools() {
    local missing=()
    command -v swaks >/dev/null || missing+=(swaks)
    # swaks needs Net::SSLeay for --tls/--tlsc; it is only a Recommends of the package.
    perl -MNet::SSLeay -e 1 2>/dev/null || missing+=(libnet-ssleay-perl)
    command -v testssl >/dev/null || command -v testssl.sh >/dev/null || missing+=(testssl.sh)
    command -v openssl >/dev/null || missing+=(openssl)
    if ((${#missing[@]} == 0)); then
        return
    fi
    log "installing ${missing[*]}"
    [[ $(id -u) == 0 ]] || fail "need root to apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -q
    timeout 300 apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
}

# A port on 127.0.0.1 the kernel just reported free (perl is essential on Debian).
free_port() {
    perl -MIO::Socket::INET -e \
        'print IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0, Listen => 1)->sockport'
}

write_config() { # dir io
    cat >"$1/way2mail.toml" <<EOF
hostname = "mx.interop.test"

[runtime]
io = "$2"
threads = 2

[[listener]]
address = "127.0.0.1:$MX"
role = "mx"

[[listener]]
address = "127.0.0.1:$SUB"
role = "submission"

[[listener]]
address = "127.0.0.1:$SUBS"
role = "submissions"

[tls]
cert = "$1/tls/cert.pem"
key = "$1/tls/key.pem"
self_signed = true

[spool]
path = "$1/spool"
key_file = "$1/spool.key"
min_free_space = 1048576

[delivery]
# The spool is checked afterwards; nothing here is meant to leave the machine.
enabled = false

[log]
format = "text"
level = "info"
EOF
}

# The first line a plain listener sends, within 2 s.
banner() {
    timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && head -n 1 <&3' _ "$1" 2>/dev/null || true
}

wait_ready() { # dir
    local deadline=$((SECONDS + 20))
    while ((SECONDS < deadline)); do
        kill -0 "$DAEMON_PID" 2>/dev/null || fail "daemon exited during startup"
        if [[ -s $1/tls/cert.pem ]] && [[ $(banner "$MX") == 220* ]] &&
            [[ $(banner "$SUB") == 220* ]]; then
            return
        fi
        sleep 0.2
    done
    fail "daemon not ready within 20 s"
}

# swaks with certificate verification; prints the queued id.
swaks_send() { # name port [--tls|--tlsc] dir
    local name=$1 port=$2 mode=$3 dir=$4 out id
    local args=(--server 127.0.0.1 --port "$port" --from "$SENDER" --to "rcpt@example.net"
        --helo interop.client.test --header "Subject: swaks via $name" --timeout 20)
    if [[ -n $mode ]]; then
        args+=("$mode" --tls-verify --tls-ca-path "$dir/tls/cert.pem")
    fi
    out=$dir/swaks-$name.out
    timeout 60 swaks "${args[@]}" </dev/null >"$out" 2>&1 || {
        cat "$out" >&2
        fail "swaks to $name (port $port) failed"
    }
    id=$(grep -oE '^<[~-]  250 2\.0\.0 [0-9A-Za-z]{26} queued' "$out" | awk '{print $4}')
    [[ -n $id ]] || {
        cat "$out" >&2
        fail "swaks to $name: no '250 2.0.0 <id> queued'"
    }
    log "swaks $name: queued $id"
    echo "$id" >>"$dir/ids"
}

# openssl s_client with one protocol version; $3 is "ok" or "refused".
s_client() { # port version ok|refused [starttls]
    local port=$1 version=$2 want=$3 out rc=0 proto
    proto=TLSv${version#tls}
    proto=${proto/_/.}
    local args=(-brief -crlf -connect "127.0.0.1:$port" "-$version"
        -CAfile "$DIR/tls/cert.pem" -verify_return_error -verify_ip 127.0.0.1
        # The client side must be willing to speak TLS 1.1 for its refusal to mean anything.
        -cipher 'DEFAULT:@SECLEVEL=0')
    [[ ${4:-} == starttls ]] && args+=(-starttls smtp)
    out=$(echo QUIT | timeout 20 openssl s_client "${args[@]}" 2>&1) || rc=$?
    local label="s_client -$version ${4:-implicit} port $port"
    case $want in
    ok)
        ((rc == 0)) && grep -q "Protocol version: $proto" <<<"$out" ||
            fail "$label: expected success (rc=$rc): $out"
        ;;
    refused)
        ((rc != 0)) && ! grep -q "Protocol version" <<<"$out" ||
            fail "$label: TLS 1.1 was accepted: $out"
        grep -qi "no protocols available" <<<"$out" &&
            fail "$label: the client refused to try TLS 1.1 itself: $out"
        ;;
    esac
    log "$label: $want"
}

testssl_protocols() { # port [starttls]
    local port=$1 csv=$DIR/testssl-$1.csv testssl finding id
    testssl=$(command -v testssl.sh || command -v testssl)
    local args=(--quiet --color 0 --warnings batch --protocols --csvfile "$csv")
    [[ ${2:-} == starttls ]] && args+=(--starttls smtp)
    # Its exit status is not a verdict; the CSV below is.
    timeout 180 "$testssl" "${args[@]}" "127.0.0.1:$port" </dev/null || true
    [[ -s $csv ]] || fail "testssl wrote no results for port $port"
    for id in SSLv2 SSLv3 TLS1 TLS1_1 TLS1_2 TLS1_3; do
        # CSV: "id","fqdn/ip","port","severity","finding","cve","cwe"
        finding=$(awk -F'"' -v id="$id" '$2 == id { print $10 }' "$csv")
        [[ -n $finding ]] || fail "testssl: no $id result for port $port"
        case $id in
        TLS1_2 | TLS1_3) [[ $finding == offered* ]] || fail "testssl port $port: $id $finding" ;;
        *) [[ $finding == "not offered"* ]] || fail "testssl port $port: $id $finding" ;;
        esac
    done
    log "testssl port $port ${2:-implicit}: only TLS 1.2 and 1.3 offered"
}

stop_daemon() {
    kill -TERM "$DAEMON_PID"
    local deadline=$((SECONDS + 30)) status=0
    while kill -0 "$DAEMON_PID" 2>/dev/null; do
        ((SECONDS < deadline)) || fail "daemon still running 30 s after SIGTERM"
        sleep 0.2
    done
    wait "$DAEMON_PID" || status=$?
    DAEMON_PID=
    ((status == 0)) || fail "exit status $status after SIGTERM"
    log "SIGTERM: exit status 0"
}

check_spool() {
    local listing id
    listing=$(timeout 60 "$BIN" spool list --config "$DIR/way2mail.toml" </dev/null)
    echo "$listing"
    while read -r id; do
        grep -q "^$id " <<<"$listing" || fail "spool list lacks $id"
    done <"$DIR/ids"
    log "spool list shows all $(wc -l <"$DIR/ids") swaks messages"
}

run_backend() { # io
    DIR=$(mktemp -d /tmp/way2mail-interop.XXXXXX)
    WORK_DIRS+=("$DIR")
    CURRENT_DIR=$DIR
    MX=$(free_port) SUB=$(free_port) SUBS=$(free_port)
    write_config "$DIR" "$1"
    log "backend $1: mx $MX, submission $SUB, submissions $SUBS"
    timeout 30 "$BIN" --config "$DIR/way2mail.toml" --check </dev/null
    (cd "$DIR" && exec "$BIN" --config "$DIR/way2mail.toml" </dev/null 2>"$DIR/daemon.log") &
    DAEMON_PID=$!
    wait_ready "$DIR"

    : >"$DIR/ids"
    swaks_send mx "$MX" "" "$DIR"
    swaks_send submission "$SUB" --tls "$DIR"
    swaks_send submissions "$SUBS" --tlsc "$DIR"

    s_client "$SUB" tls1_1 refused starttls
    s_client "$SUB" tls1_2 ok starttls
    s_client "$SUB" tls1_3 ok starttls
    s_client "$SUBS" tls1_1 refused
    s_client "$SUBS" tls1_2 ok
    s_client "$SUBS" tls1_3 ok

    testssl_protocols "$SUB" starttls
    testssl_protocols "$SUBS"

    stop_daemon
    check_spool
}

# ---- outbound delivery against Postfix's smtp-sink ----

SMTP_SINK=/usr/sbin/smtp-sink

# Debian's postfix with "No configuration": no main.cf, and the service must not start
# (where no policy-rc.d forbids starts, one does so for the duration of the install).
install_postfix() {
    [[ -x $SMTP_SINK ]] && return
    [[ $(id -u) == 0 ]] || fail "need root to apt-get install postfix"
    log "installing postfix (No configuration) for smtp-sink"
    local policy=/usr/sbin/policy-rc.d own_policy=
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        own_policy=1
    fi
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    export DEBIAN_FRONTEND=noninteractive
    local status=0
    timeout 300 apt-get install -y -q --no-install-recommends postfix </dev/null || status=$?
    if ((status != 0)); then
        timeout 300 apt-get update -q
        status=0
        timeout 300 apt-get install -y -q --no-install-recommends postfix </dev/null || status=$?
    fi
    [[ -n $own_policy ]] && rm -f "$policy"
    ((status == 0)) || fail "apt-get install postfix failed ($status)"
    [[ -x $SMTP_SINK ]] || fail "postfix installed but $SMTP_SINK is missing"
    # Without main.cf Postfix cannot run; if a configured one was started anyway, stop it.
    if [[ -f /etc/postfix/main.cf ]] && postfix status >/dev/null 2>&1; then
        postfix stop || fail "cannot stop the postfix service the install started"
    fi
}

write_delivery_config() { # dir io mx-port sink-port bounce-port
    cat >"$1/way2mail.toml" <<EOF
hostname = "mx.interop.test"

[runtime]
io = "$2"
threads = 2

[[listener]]
address = "127.0.0.1:$3"
role = "mx"

[tls]
cert = "$1/tls/cert.pem"
key = "$1/tls/key.pem"
self_signed = true

[spool]
path = "$1/spool"
key_file = "$1/spool.key"
min_free_space = 1048576

[delivery]
enabled = true
log_file = "$1/delivery.log"
# Deferred messages must still be queued when the spool is listed at the end.
retry_initial_secs = 3600
retry_max_secs = 7200
connect_timeout_secs = 5
command_timeout_secs = 10
data_timeout_secs = 10

[log]
format = "text"
level = "info"

# Notices to the sender's domain go to a second smtp-sink; everything else to the one
# under test. smtp-sink offers no STARTTLS: opportunistic TLS must fall back to plain.
[[route]]
domain = "example.org"
host = "[127.0.0.1]:$5"

[[route]]
domain = "*"
host = "[127.0.0.1]:$4"
EOF
}

# Starts smtp-sink on 127.0.0.1:PORT with counters (-c) to NAME.out and every transaction
# appended to NAME.dump; sets SMTP_SINK_PID.
start_smtp_sink() { # dir name port [smtp-sink options...]
    local dir=$1 name=$2 port=$3
    shift 3
    local user=()
    # As root smtp-sink insists on dropping privileges (-u).
    [[ $(id -u) == 0 ]] && user=(-u nobody)
    "$SMTP_SINK" "${user[@]}" -c -D "$dir/$name.dump" "$@" "127.0.0.1:$port" 64 \
        </dev/null >"$dir/$name.out" 2>&1 &
    SMTP_SINK_PID=$!
    SMTP_SINK_PIDS+=("$SMTP_SINK_PID")
    local deadline=$((SECONDS + 10))
    until [[ $(banner "$port") == 220* ]]; do
        kill -0 "$SMTP_SINK_PID" 2>/dev/null || {
            cat "$dir/$name.out" >&2
            fail "smtp-sink $* exited at start"
        }
        ((SECONDS < deadline)) || fail "smtp-sink $* not answering within 10 s"
        sleep 0.1
    done
}

stop_smtp_sink() {
    kill -TERM "$SMTP_SINK_PID" 2>/dev/null || true
    local deadline=$((SECONDS + 10))
    while kill -0 "$SMTP_SINK_PID" 2>/dev/null; do
        ((SECONDS < deadline)) || kill -KILL "$SMTP_SINK_PID" 2>/dev/null || true
        sleep 0.1
    done
    wait "$SMTP_SINK_PID" 2>/dev/null || true
}

# One message through the daemon; sets SUBMITTED_ID.
submit() { # dir rcpt marker
    local out=$1/swaks-${3}.out
    timeout 60 swaks --server 127.0.0.1 --port "$MX" --from "$SENDER" --to "$2" \
        --helo interop.client.test --header "Subject: delivery $3" --timeout 20 \
        </dev/null >"$out" 2>&1 || {
        cat "$out" >&2
        fail "swaks to the daemon for $2 failed"
    }
    SUBMITTED_ID=$(grep -oE '^<[~-]  250 2\.0\.0 [0-9A-Za-z]{26} queued' "$out" | awk '{print $4}')
    [[ -n $SUBMITTED_ID ]] || {
        cat "$out" >&2
        fail "swaks for $2: no '250 2.0.0 <id> queued'"
    }
}

# Waits up to 30 s for a delivery log line for ID (and RCPT) with OUTCOME; prints it.
wait_outcome() { # dir id rcpt outcome
    local deadline=$((SECONDS + 30)) line
    while ((SECONDS < deadline)); do
        line=$(grep -F "\"message_id\":\"$2\"" "$1/delivery.log" 2>/dev/null |
            grep -F "\"recipient\":\"$3\"" | grep -F "\"outcome\":\"$4\"" | head -n 1 || true)
        if [[ -n $line ]]; then
            echo "$line"
            return
        fi
        sleep 0.2
    done
    echo "--- delivery log ---" >&2
    cat "$1/delivery.log" >&2 || true
    fail "no '$4' delivery log line for $2 to $3 within 30 s"
}

# Waits up to 10 s for FILE to contain TEXT.
wait_contains() { # file text what
    local deadline=$((SECONDS + 10))
    until grep -qF -- "$2" "$1" 2>/dev/null; do
        ((SECONDS < deadline)) || fail "$3: '$2' not in $1 within 10 s"
        sleep 0.2
    done
}

# smtp-sink's last "sess=N quit=N mesg=N" counter line (they end in CR, not LF).
sink_messages() { # counter-file
    tr '\r' '\n' <"$1" | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -n 1
}

# One case: smtp-sink with OPTIONS, one message to CASE.interop.test, the expected outcome
# in the delivery log, then the case's own checks. smtp-sink's files are in SINK_DIR, the
# daemon's in DIR.
delivery_case() { # case outcome expect [smtp-sink options...]
    local case=$1 outcome=$2 expect=$3 dir=$SINK_DIR rcpt marker record
    shift 3
    rcpt="rcpt@$case.interop.test"
    marker="W2M-INTEROP-$case-$RANDOM$RANDOM"
    start_smtp_sink "$dir" "$case" "$SINK" "$@"
    submit "$DIR" "$rcpt" "$marker"
    record=$(wait_outcome "$DIR" "$SUBMITTED_ID" "$rcpt" "$outcome")
    grep -qF -- "$expect" <<<"$record" || fail "$case: expected '$expect' in $record"
    case $outcome in
    delivered)
        wait_contains "$dir/$case.dump" "$marker" "$case: smtp-sink dump"
        # HELO after a refused EHLO makes smtp-sink record plain SMTP.
        local proto=ESMTP
        [[ " $* " == *" -e "* || " $* " == *" -P "* ]] && proto=SMTP
        grep -qx "X-Client-Proto: $proto" "$dir/$case.dump" ||
            fail "$case: smtp-sink did not see $proto"
        ;;
    deferred)
        # The reply code when there was one; a dropped connection leaves our own reason.
        local last=last=
        [[ $expect =~ ^[0-9]{3}$ ]] && last="last=\"$expect"
        echo "$SUBMITTED_ID $rcpt $last" >>"$DIR/deferred"
        ;;
    bounced)
        # The notice (to the sender, from <>) carries the original's Subject.
        wait_contains "$dir/bounces.dump" "$marker" "$case: bounce notice at the sender's sink"
        echo "$SUBMITTED_ID" >>"$DIR/gone"
        ;;
    esac
    stop_smtp_sink
    if [[ $outcome == delivered ]]; then
        (($(sink_messages "$dir/$case.out") >= 1)) || fail "$case: smtp-sink counted no message"
        echo "$SUBMITTED_ID" >>"$DIR/gone"
    fi
    log "smtp-sink ${*:-(no options)}: $outcome, $expect"
}

# After SIGTERM: exactly the deferred messages are queued, each pending after one attempt
# with the reply that deferred it; delivered and bounced ones (and the notices) are gone.
check_delivery_spool() { # dir
    local listing id rcpt expect line
    listing=$(timeout 60 "$BIN" spool list --config "$1/way2mail.toml" </dev/null)
    echo "$listing"
    while read -r id rcpt expect; do
        grep -q "^$id " <<<"$listing" || fail "deferred $id missing from spool list"
        line=$(grep -F "    $rcpt " <<<"$listing") || fail "no recipient line for $rcpt"
        [[ $line == *" pending attempts=1 "* && $line == *"$expect"* ]] ||
            fail "$rcpt: unexpected state: $line"
    done <"$1/deferred"
    while read -r id; do
        grep -q "^$id " <<<"$listing" && fail "$id was delivered or bounced but is still queued"
    done <"$1/gone"
    local queued expected
    queued=$(grep -cE '^[0-9A-Za-z]{26} ' <<<"$listing" || true)
    expected=$(wc -l <"$1/deferred")
    ((queued == expected)) || fail "spool holds $queued messages, expected the $expected deferred"
    log "spool list: the $expected deferred messages queued, everything else gone"
}

run_delivery() { # io
    DIR=$(mktemp -d /tmp/way2mail-interop.XXXXXX)
    WORK_DIRS+=("$DIR")
    CURRENT_DIR=$DIR
    # smtp-sink writes its dumps after dropping to nobody.
    SINK_DIR=$(mktemp -d /tmp/way2mail-smtp-sink.XXXXXX)
    WORK_DIRS+=("$SINK_DIR")
    if [[ $(id -u) == 0 ]]; then chown nobody "$SINK_DIR"; fi
    MX=$(free_port) SINK=$(free_port) BOUNCE=$(free_port)
    write_delivery_config "$DIR" "$1" "$MX" "$SINK" "$BOUNCE"
    log "delivery, backend $1: mx $MX, smtp-sink $SINK, bounce smtp-sink $BOUNCE"
    timeout 30 "$BIN" --config "$DIR/way2mail.toml" --check </dev/null
    start_smtp_sink "$SINK_DIR" bounces "$BOUNCE"
    local bounce_pid=$SMTP_SINK_PID
    (cd "$DIR" && exec "$BIN" --config "$DIR/way2mail.toml" </dev/null 2>"$DIR/daemon.log") &
    DAEMON_PID=$!
    local deadline=$((SECONDS + 20))
    until [[ $(banner "$MX") == 220* ]]; do
        kill -0 "$DAEMON_PID" 2>/dev/null || fail "daemon exited during startup"
        ((SECONDS < deadline)) || fail "daemon not ready within 20 s"
        sleep 0.2
    done
    : >"$DIR/deferred"
    : >"$DIR/gone"

    delivery_case plain delivered '"reply":"250 2.0.0 Ok'
    delivery_case no-pipelining delivered '"reply":"250 ' -p
    delivery_case no-esmtp delivered '"reply":"250 ' -e
    delivery_case pix delivered '"reply":"250 ' -P
    delivery_case no-dsn delivered '"reply":"250 ' -N
    delivery_case no-8bitmime delivered '"reply":"250 ' -8 -E
    delivery_case soft-rcpt deferred 450 -r RCPT
    delivery_case soft-dot deferred 450 -r .
    delivery_case quit-421 deferred 421 -Q MAIL
    delivery_case drop-rcpt deferred '"outcome":"deferred"' -q RCPT
    delivery_case drop-dot deferred '"outcome":"deferred"' -q .
    delivery_case hard-rcpt bounced 500 -f RCPT
    delivery_case hard-dot bounced 500 -f .

    SMTP_SINK_PID=$bounce_pid
    stop_daemon
    stop_smtp_sink
    check_delivery_spool "$DIR"
}

# ---- DKIM signatures verified by dkimpy ----

# Versions known to work; dkimpy's ed25519 extra brings PyNaCl.
DKIMPY_PACKAGES=('dkimpy[ed25519]==1.1.8' 'dnspython==2.9.2')
DKIMPY_MARKER='DKIMPY-INTEROP: all signatures verified'

# A virtualenv under /tmp with dkimpy and dnspython; sets DKIMPY_PYTHON.
install_dkimpy() {
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        [[ $(id -u) == 0 ]] || fail "need root to apt-get install python3-venv"
        log "installing python3-venv"
        export DEBIAN_FRONTEND=noninteractive
        timeout 300 apt-get install -y -q --no-install-recommends python3-venv </dev/null || {
            timeout 300 apt-get update -q
            timeout 300 apt-get install -y -q --no-install-recommends python3-venv </dev/null
        }
    fi
    local venv
    venv=$(mktemp -d /tmp/way2mail-dkimpy.XXXXXX)
    WORK_DIRS+=("$venv")
    timeout 120 python3 -m venv "$venv" </dev/null || fail "python3 -m venv failed"
    log "pip install ${DKIMPY_PACKAGES[*]}"
    timeout 600 "$venv/bin/pip" install -q --disable-pip-version-check "${DKIMPY_PACKAGES[@]}" \
        </dev/null || fail "pip install ${DKIMPY_PACKAGES[*]} failed"
    DKIMPY_PYTHON=$venv/bin/python
    "$DKIMPY_PYTHON" -c 'import dkim, dns.resolver, nacl' || fail "dkimpy not importable"
}

# The test skips itself (and passes) without WAY2MAIL_DKIMPY_PYTHON: the marker line
# in its output is what proves dkimpy ran and every signature passed.
run_dkim_interop() {
    install_dkimpy
    local out
    out=$(mktemp /tmp/way2mail-dkimpy-test.XXXXXX)
    WORK_DIRS+=("$out")
    log "dkimpy_verifies_what_the_mta_signs with $("$DKIMPY_PYTHON" -c 'import importlib.metadata as m; print("dkimpy", m.version("dkimpy"), "dnspython", m.version("dnspython"))')"
    (cd "$ROOT" && WAY2MAIL_DKIMPY_PYTHON=$DKIMPY_PYTHON timeout 1200 cargo test -q \
        -p way2mail-tests --test dkim_signing dkimpy_verifies_what_the_mta_signs \
        -- --exact --nocapture) </dev/null >"$out" 2>&1 || {
        cat "$out" >&2
        fail "dkimpy_verifies_what_the_mta_signs failed"
    }
    grep -E '^signature [0-9]+: ' "$out" || true
    grep -qF "$DKIMPY_MARKER" "$out" || {
        cat "$out" >&2
        fail "the dkimpy test did not run (no '$DKIMPY_MARKER' line)"
    }
    log "$(grep -F "$DKIMPY_MARKER" "$out")"
}

main() {
    install_tools
    install_postfix
    log "swaks $(swaks --version | sed -n 1p | awk '{print $3}'), $(openssl version)"
    log "building the release daemon"
    (cd "$ROOT" && cargo build --release -p way2mail-mta --bin way2mail-mta)
    [[ -x $BIN ]] || fail "$BIN not built"
    local started=$SECONDS
    for io in io_uring epoll; do
        run_backend "$io"
    done
    log "inbound interop passed in $((SECONDS - started)) s"
    started=$SECONDS
    for io in io_uring epoll; do
        run_delivery "$io"
    done
    log "delivery interop with smtp-sink passed in $((SECONDS - started)) s"
    started=$SECONDS
    run_dkim_interop
    log "DKIM interop with dkimpy passed in $((SECONDS - started)) s"
}

main "$@"
