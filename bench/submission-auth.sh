#!/usr/bin/env bash
# Submission benchmark: what SMTP AUTH costs. A real way2mail-control holds a tenant,
# its domain and an SMTP credential (made with the way2mail CLI); way2mail-mta
# follows it; way2mail-bench submits over STARTTLS on the submission port, in four
# runs on loopback, one after the other against the same daemons:
#
#   1. no AUTH (127.0.0.0/8 is trusted), a new connection per message
#   2. AUTH PLAIN on every connection, a new connection per message
#   3. no AUTH, connections kept open
#   4. AUTH once per connection, connections kept open
#   5. as 3, from a domain that is no tenant's: not DKIM-signed (3 vs 5 = signing cost)
#
#   bench/submission-auth.sh [CONNECTIONS] [MESSAGES] [SIZE]
#
# Defaults: 20 connections, 4,000 messages of 5 KB (io = "auto"). The first AUTH of a
# user costs one argon2id verification on the MTA's verifier pool; later ones with
# the same password hit the MTA's verification cache, which is what runs 2 and 4
# measure after their first connection.
set -euo pipefail

CONNECTIONS=${1:-20}
MESSAGES=${2:-4000}
SIZE=${3:-5120}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
cargo build --release -q -p way2mail-mta -p way2mail-control -p way2mail-cli -p way2mail-bench
BENCH_NAME=auth-bench
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

cat >"$WORK/control.toml" <<TOML
socket = "$WORK/control.sock"
store = "$WORK/control"
key_file = "$WORK/control.key"
TOML
start_control
add_tenant bench
password=$(smtp_password bench)

port=$(free_port)
write_mta_config submission "$port"
start_mta "$port" 1

run() {
    echo "== $1"
    shift
    WAY2MAIL_BENCH_PASSWORD=$password "$BIN/way2mail-bench" smtp --server "127.0.0.1:$port" \
        --starttls --connections "$CONNECTIONS" --messages "$MESSAGES" --size "$SIZE" \
        --from "${FROM:-news@bench.example}" "$@"
}
run "1. no AUTH, new connection per message" --new-connection-per-message
run "2. AUTH PLAIN, new connection per message" --new-connection-per-message --auth-user app@bench.example
run "3. no AUTH, connections kept open"
run "4. AUTH PLAIN once per connection, connections kept open" --auth-user app@bench.example
# The same as 3 from a domain that is no tenant's: queued unsigned. 3 vs 5 is what
# DKIM signing (rsa-sha256 + ed25519-sha256) costs.
FROM=news@unsigned.example run "5. no AUTH, connections kept open, not a tenant domain (unsigned)"
echo "== MTA auth log lines: $(grep -c 'way2mail::auth' "$WORK/mta.log")"
