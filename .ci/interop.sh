#!/usr/bin/env bash
# Interoperability of the release daemon with independent tools, for each I/O backend:
#   swaks    plain to mx, STARTTLS (--tls) to submission, implicit TLS (--tlsc) to
#            submissions, each verifying the daemon's self-signed certificate;
#   openssl  s_client: TLS 1.1 refused, TLS 1.2 and 1.3 accepted, on STARTTLS and on
#            implicit TLS;
#   testssl  --protocols on both TLS listeners: SSLv2, SSLv3, TLS 1.0, TLS 1.1 not offered;
# then SIGTERM must give exit status 0 and `spool list` must show the swaks messages.
# Runs as root on a bare Debian bookworm (installs its tools with apt-get); only
# 127.0.0.1 is used; every wait is bounded.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/way2mail-mta
SENDER=interop@example.org
DAEMON_PID=
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

main() {
    install_tools
    log "swaks $(swaks --version | sed -n 1p | awk '{print $3}'), $(openssl version)"
    log "building the release daemon"
    (cd "$ROOT" && cargo build --release -p way2mail-mta --bin way2mail-mta)
    [[ -x $BIN ]] || fail "$BIN not built"
    local started=$SECONDS
    for io in io_uring epoll; do
        run_backend "$io"
    done
    log "interop passed in $((SECONDS - started)) s"
}

main "$@"
