# Shared by the bench scripts that run a real way2mail-control beside the MTA; sourced,
# not run. Expects ROOT (the checkout) and sets BIN, WORK (a fresh directory under
# target/, removed at exit with every daemon in PIDS), and the functions below.

BIN=$ROOT/target/release
WORK=$(mktemp -d "$ROOT/target/${BENCH_NAME:-bench}.XXXXXX")
PIDS=()
stop() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap stop EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

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

cli() { "$BIN/way2mail" "$@"; }

# Starts way2mail-control with $WORK/control.toml, waits for its socket, makes the
# first admin and logs in (the session token in $WORK/token, for cli).
start_control() {
    "$BIN/way2mail-control" --config "$WORK/control.toml" 2>"$WORK/control.log" &
    PIDS+=($!)
    for _ in $(seq 100); do [[ -S $WORK/control.sock ]] && break; sleep 0.1; done
    export WAY2MAIL_SOCKET=$WORK/control.sock WAY2MAIL_TOKEN_FILE=$WORK/token
    local secret
    secret=$(echo "bench-admin-password" | cli --json bootstrap --name admin --password-stdin |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["totp_secret"])')
    echo "bench-admin-password" |
        cli login --name admin --password-stdin --totp "$(totp "$secret")" >/dev/null
}

# A tenant with one sending domain, allowed without DNS (none on loopback), and
# limits no benchmark reaches.
add_tenant() {
    cli tenant add "$1" --business-name "$1 Ltd" --contact "ops@$1.example" \
        --messages-per-hour 10000000 --messages-per-day 100000000 >/dev/null
    cli domain add "$1" "$1.example" >/dev/null
    # No DNS here to verify it: let it send (every message is still DKIM-signed).
    cli domain override "$1.example" --allow --reason "benchmark on loopback" >/dev/null
}

# A new SMTP credential app@TENANT.example; prints its secret.
smtp_password() {
    cli --json credential add "$1" --smtp "app@$1.example" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])'
}

# Writes $WORK/mta.toml for a way2mail-mta following control at $WORK/control.sock:
# one listener per ROLE PORT pair given, the spool, TLS and admin socket under
# $WORK/var, delivery off.
write_mta_config() {
    {
        while (($# >= 2)); do
            printf '[[listener]]\naddress = "127.0.0.1:%s"\nrole = "%s"\n\n' "$2" "$1"
            shift 2
        done
        cat <<TOML
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

[control]
socket = "$WORK/control.sock"
snapshot_file = "$WORK/var/control-snapshot"
TOML
    } >"$WORK/mta.toml"
}

# Starts way2mail-mta with $WORK/mta.toml and waits for PORT and for USERS SMTP users
# from control.
start_mta() {
    "$BIN/way2mail-mta" --config "$WORK/mta.toml" 2>"$WORK/mta.log" &
    PIDS+=($!)
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && break
        sleep 0.1
    done
    for _ in $(seq 50); do grep -q "users=$2" "$WORK/mta.log" && break; sleep 0.1; done
}
