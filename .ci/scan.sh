#!/usr/bin/env bash
# Content scanning with a real rspamd (docs/scanning.md): installs Debian's rspamd
# with apt-get when missing (its systemd unit is not needed: the test starts its own
# rspamd on a free loopback port with a minimal configuration, no redis, no network
# lookups), then runs tests/tests/content_scan.rs:
#   GTUBE refused with 550 5.7.1 over SMTP and 422 over the API; a clean message
#   signed, delivered and its score logged; rspamd stopped -> on_failure honoured
#   both ways (tempfail 451, accept); a message over hold_score held, listed as
#   held and delivered once released.
# The tests skip themselves (and pass) without rspamd: the marker line in their
# output is what proves rspamd really ran. Every wait is bounded.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MARKER='RSPAMD-INTEROP: ran'
WORK=$(mktemp -d /tmp/way2mail-scan.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

log() { printf '[scan] %s\n' "$*"; }
fail() {
    log "FAIL: $*" >&2
    exit 1
}

install_rspamd() {
    command -v rspamd >/dev/null && return
    [[ $(id -u) == 0 ]] || fail "need root to apt-get install rspamd"
    log "installing rspamd"
    export DEBIAN_FRONTEND=noninteractive
    # Only the package: no service is started in a container without systemd, and
    # the test does not want one on the default ports anyway.
    timeout 600 apt-get install -y -q --no-install-recommends rspamd </dev/null || {
        timeout 300 apt-get update -q
        timeout 600 apt-get install -y -q --no-install-recommends rspamd </dev/null
    } || fail "apt-get install rspamd failed"
    command -v rspamd >/dev/null || fail "rspamd not on PATH after installing it"
}

main() {
    install_rspamd
    log "$(rspamd --version 2>/dev/null | sed -n 1p)"
    local out=$WORK/test.out
    (cd "$ROOT" && timeout 1200 cargo test -q --workspace --test content_scan \
        -- --nocapture) </dev/null >"$out" 2>&1 || {
        cat "$out" >&2
        fail "cargo test --test content_scan failed"
    }
    local ran
    ran=$(grep -cF "$MARKER" "$out" || true)
    if grep -qF 'SKIPPED: rspamd not installed' "$out" || ((ran < 3)); then
        cat "$out" >&2
        fail "the rspamd tests did not all run ($ran of 3 '$MARKER' lines)"
    fi
    log "$ran tests ran against rspamd"
}

main "$@"
