#!/usr/bin/env bash
# Data protection benchmark: how long a client's data requests and a backup take
# with a full queue. A real way2mail-control holds two tenants (made with the
# way2mail CLI); way2mail-mta follows it with delivery off, so that everything
# submitted stays queued. way2mail-bench submits MESSAGES messages of SIZE bytes for
# tenant "bench" and a tenth as many for tenant "other" (AUTH, STARTTLS), then each
# request is timed:
#
#   tenant report, tenant export (a tar of every message), backup create and verify
#   (the whole node), tenant erase (of "bench": records deleted, keys destroyed),
#   then, both daemons stopped, backup restore of the backup made before the erasure
#   (it brings back "other" and drops every record of "bench")
#
#   bench/data-protection.sh [MESSAGES] [SIZE]
#
# Defaults: 20,000 messages of 5 KB for "bench" (about 100 MB queued).
set -euo pipefail

MESSAGES=${1:-20000}
SIZE=${2:-5120}
OTHER=$((MESSAGES / 10))

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
cargo build --release -q -p way2mail-mta -p way2mail-control -p way2mail-bench
BIN=$ROOT/target/release
WORK=$(mktemp -d "$ROOT/target/dp-bench.XXXXXX")
PIDS=()
stop() {
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap stop EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
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
# Runs a command (its output kept in last.out) and prints its wall time after its label.
timed() {
    local label=$1 start end
    shift
    start=$(date +%s%N)
    "$@" >"$WORK/last.out"
    end=$(date +%s%N)
    local ms=$(((end - start) / 1000000))
    printf '%-34s %5d.%03d s\n' "$label" $((ms / 1000)) $((ms % 1000))
}

(umask 077 && head -c 32 /dev/urandom >"$WORK/backup.key")
cat >"$WORK/control.toml" <<TOML
socket = "$WORK/control.sock"
store = "$WORK/control"
key_file = "$WORK/control.key"

[mta]
admin_socket = "$WORK/mta.sock"
timeout_ms = 600000

[backup]
key_file = "$WORK/backup.key"
TOML
"$BIN/way2mail-control" --config "$WORK/control.toml" 2>"$WORK/control.log" &
PIDS+=($!)
for _ in $(seq 100); do [[ -S $WORK/control.sock ]] && break; sleep 0.1; done

export WAY2MAIL_SOCKET=$WORK/control.sock WAY2MAIL_TOKEN_FILE=$WORK/token
cli() { "$BIN/way2mail" "$@"; }
secret=$(echo "bench-admin-password" | cli --json bootstrap --name admin --password-stdin |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["totp_secret"])')
echo "bench-admin-password" | cli login --name admin --password-stdin --totp "$(totp "$secret")" >/dev/null
for t in bench other; do
    cli tenant add $t --business-name "$t Ltd" --contact ops@$t.example \
        --messages-per-hour 10000000 --messages-per-day 100000000 >/dev/null
    cli domain add $t $t.example >/dev/null
    cli domain override $t.example --allow --reason "benchmark on loopback" >/dev/null
done
password() {
    cli --json credential add "$1" --smtp "app@$1.example" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])'
}
bench_password=$(password bench)
other_password=$(password other)

port=$(free_port)
cat >"$WORK/mta.toml" <<TOML
[[listener]]
address = "127.0.0.1:$port"
role = "submission"

[spool]
path = "$WORK/var/spool"
key_file = "$WORK/var/spool.key"

[admin]
socket = "$WORK/mta.sock"

[delivery]
enabled = false

[tls]
cert = "$WORK/var/tls/cert.pem"
key = "$WORK/var/tls/key.pem"

[control]
socket = "$WORK/control.sock"
snapshot_file = "$WORK/var/control-snapshot"
TOML
"$BIN/way2mail-mta" --config "$WORK/mta.toml" 2>"$WORK/mta.log" &
PIDS+=($!)
for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
    sleep 0.1
done
for _ in $(seq 50); do grep -q "users=2" "$WORK/mta.log" && break; sleep 0.1; done

submit() {
    WAY2MAIL_BENCH_PASSWORD=$2 "$BIN/way2mail-bench" smtp --server "127.0.0.1:$port" \
        --starttls --connections 20 --messages "$3" --size "$SIZE" \
        --from "news@$1.example" --auth-user "app@$1.example" | grep -E "failed|throughput"
}
echo "== queueing $MESSAGES messages of $SIZE bytes for bench, $OTHER for other"
submit bench "$bench_password" "$MESSAGES"
submit other "$other_password" "$OTHER"
echo "== requests"
timed "tenant report bench" cli tenant report bench
timed "tenant export bench" cli tenant export bench --out "$WORK/bench.tar"
echo "   export: $(du -m "$WORK/bench.tar" | cut -f1) MB, $(tar -tf "$WORK/bench.tar" | grep -c '\.eml$') messages"
timed "backup create" cli backup create --out "$WORK/node.w2b"
echo "   backup: $(du -m "$WORK/node.w2b" | cut -f1) MB"
timed "backup verify" cli backup verify --in "$WORK/node.w2b" --key "$WORK/backup.key"
timed "tenant erase bench" cli tenant erase bench --confirm bench
timed "tenant report other (after)" cli tenant report other
for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
wait "${PIDS[@]}" 2>/dev/null || true
PIDS=()
timed "backup restore (daemons stopped)" cli --json backup restore --in "$WORK/node.w2b" \
    --key "$WORK/backup.key" --control-config "$WORK/control.toml" \
    --mta-config "$WORK/mta.toml" --yes
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("   restored: %s" % {k: v for k, v in r.items() if k.startswith("spool")})' "$WORK/last.out"
