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
cargo build --release -q -p way2mail-mta -p way2mail-control -p way2mail-cli -p way2mail-bench
BENCH_NAME=dp-bench
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

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
start_control
add_tenant bench
add_tenant other
bench_password=$(smtp_password bench)
other_password=$(smtp_password other)

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
start_mta "$port" 2

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
