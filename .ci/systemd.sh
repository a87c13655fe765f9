#!/usr/bin/env bash
# Checks the systemd packaging in systemd/ without a running systemd (CI containers have
# none as PID 1):
#   verify     `systemd-analyze verify` on copies of both units whose ExecStart points at
#              the built binaries; any line it prints fails the run (unknown keys and bad
#              values are only warnings with exit status 0). A deliberately broken copy
#              must be caught too, so the check itself is known to work.
#   security   `systemd-analyze security --offline=true`: the exposure score of each unit
#              (informational, printed with the settings that cost points).
#   sysusers   `systemd-sysusers --root` into an empty tree: both users, group way2mail
#              with way2mail-control as member, nologin shells.
#   tmpfiles   `systemd-tmpfiles --create --root` into that tree: modes and owners.
#   configs    systemd/mta.toml and systemd/control.toml pass `--check`, also after the
#              install's sed naming control's uid in [admin] allowed_uids.
#   sd_notify  both daemons started by hand with $NOTIFY_SOCKET on a datagram socket must
#              send READY=1 once serving and STOPPING=1 on SIGTERM (the Type=notify
#              contract), and exit 0; the MTA's admin socket is gone afterwards.
# Builds nothing: the binaries come from $WAY2MAIL_BIN_DIR (default target/release;
# .ci/run builds them). Installs Debian's systemd package when systemd-analyze is missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN_DIR=${WAY2MAIL_BIN_DIR:-$TARGET_DIR/release}
MTA=$BIN_DIR/way2mail-mta
CONTROL=$BIN_DIR/way2mail-control
UNITS=(way2mail-mta.service way2mail-control.service)
PIDS=()
WORK=

log() { printf '==> %s\n' "$*"; }
fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

cleanup() {
    local status=$? pid
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ -n $WORK ]]; then rm -rf "$WORK"; fi
    exit "$status"
}
trap cleanup EXIT

install_tools() {
    local missing=()
    command -v systemd-analyze >/dev/null || missing+=(systemd)
    command -v python3 >/dev/null || missing+=(python3)
    if ((${#missing[@]} == 0)); then
        return
    fi
    log "installing ${missing[*]}"
    [[ $(id -u) == 0 ]] || fail "need root to apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -q
    timeout 600 apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
}

# Copies of the units with ExecStart on the built binaries (verify checks that the
# command exists and is executable).
unit_copies() {
    local dir=$1 unit
    mkdir -p "$dir"
    for unit in "${UNITS[@]}"; do
        sed -e "s|/usr/local/bin/way2mail-mta|$MTA|" \
            -e "s|/usr/local/bin/way2mail-control|$CONTROL|" \
            "$ROOT/systemd/$unit" >"$dir/$unit"
        grep -q "^ExecStart=$BIN_DIR/" "$dir/$unit" || fail "$unit: ExecStart not rewritten"
    done
}

# Runs `systemd-analyze verify` on the given unit files; prints its output and returns
# non-zero when it printed anything or failed. Nothing is filtered: on Debian bookworm
# (systemd 252) in a container without systemd as PID 1, verify of a clean unit prints
# nothing at all, so every line is about our units. --man=no: the units carry no man:
# links. The working directory is the units' so that Wants=/After= on the other unit
# resolve to our copy rather than to whatever is installed.
verify() {
    local dir=$1 output status=0
    shift
    output=$(cd "$dir" && systemd-analyze verify --man=no "$@" 2>&1) || status=$?
    if [[ -n $output ]]; then
        printf '%s\n' "$output"
    fi
    [[ $status == 0 && -z $output ]]
}

check_verify() {
    log "systemd-analyze verify ${UNITS[*]}"
    unit_copies "$WORK/units"
    verify "$WORK/units" "${UNITS[@]}" || fail "systemd-analyze verify reported problems (above)"
    # The check must be able to fail: a misspelt key is only a warning (exit status 0).
    sed 's/^ProtectHome=yes$/ProtectHome=yes\nProtectHomme=yes/' \
        "$WORK/units/way2mail-mta.service" >"$WORK/units/broken.service"
    if verify "$WORK/units" broken.service >/dev/null; then
        fail "verify did not catch a misspelt key in a broken copy"
    fi
    rm "$WORK/units/broken.service"
    log "both units verified clean"
}

check_security() {
    if ! systemd-analyze security --help 2>&1 | grep -q -- '--offline'; then
        log "systemd-analyze security has no --offline here; skipped"
        return
    fi
    local unit
    for unit in "${UNITS[@]}"; do
        log "systemd-analyze security --offline=true $unit (informational)"
        # The table's ✗ rows (what still costs exposure) and the score.
        (cd "$WORK/units" && systemd-analyze security --offline=true --no-pager "$unit" 2>&1) |
            grep -E '^✗|Overall exposure' || true
    done
}

check_sysusers_tmpfiles() {
    local root=$WORK/root gid
    mkdir -p "$root/etc" "$root/usr/lib/sysusers.d" "$root/usr/lib/tmpfiles.d"
    cp "$ROOT/systemd/sysusers.d/way2mail.conf" "$root/usr/lib/sysusers.d/"
    cp "$ROOT/systemd/tmpfiles.d/way2mail.conf" "$root/usr/lib/tmpfiles.d/"
    log "systemd-sysusers --root (a scratch tree)"
    systemd-sysusers --root="$root" 2>&1 | sed 's/^/    /'
    grep -Eq '^way2mail:x:[0-9]+:[0-9]+:[^:]*:/var/lib/way2mail:/usr/sbin/nologin$' "$root/etc/passwd" ||
        fail "sysusers: no way2mail user with home /var/lib/way2mail and nologin"
    grep -Eq '^way2mail-control:x:[0-9]+:[0-9]+:[^:]*:/var/lib/way2mail:/usr/sbin/nologin$' \
        "$root/etc/passwd" || fail "sysusers: no way2mail-control user"
    grep -Eq '^way2mail:x:[0-9]+:way2mail-control$' "$root/etc/group" ||
        fail "sysusers: way2mail-control is not a member of group way2mail"
    gid=$(awk -F: '$1 == "way2mail" { print $3 }' "$root/etc/group")

    log "systemd-tmpfiles --create --root (the same tree)"
    # Names resolve through the tree's /etc/group written just above.
    local output
    output=$(systemd-tmpfiles --root="$root" --create way2mail.conf 2>&1) ||
        fail "systemd-tmpfiles failed: $output"
    [[ -z $output ]] || fail "systemd-tmpfiles printed: $output"
    expect_dir "$root/etc/way2mail" "750 0 $gid"
    expect_dir "$root/etc/way2mail/tls" "700 0 0"
    expect_dir "$root/var/lib/way2mail" "755 0 0"
}

expect_dir() {
    local got
    got=$(stat -c '%a %u %g' "$1")
    [[ $got == "$2" ]] || fail "$1: mode/uid/gid $got, expected $2"
    log "  ${1#"$WORK"/root} $got"
}

check_configs() {
    log "example configurations pass --check"
    "$MTA" --config "$ROOT/systemd/mta.toml" --check
    "$CONTROL" --config "$ROOT/systemd/control.toml" --check
    # The install step of docs/operations.md that names control's uid in the MTA's file.
    sed "s/^allowed_uids = .*/allowed_uids = [998]/" "$ROOT/systemd/mta.toml" >"$WORK/mta.toml"
    grep -q '^allowed_uids = \[998\]$' "$WORK/mta.toml" ||
        fail "systemd/mta.toml: the install's sed does not find allowed_uids"
    "$MTA" --config "$WORK/mta.toml" --check
}

# A datagram socket like systemd's notify socket; prints each datagram on its own line
# (newlines inside a datagram become '|') and flushes, so the shell can follow it; ends
# after STOPPING=1.
RECEIVER_PID=
start_receiver() {
    python3 -u - "$1" <<'EOF' >"$2" &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
while True:
    state = s.recv(4096).decode("utf-8", "replace")
    print(state.replace("\n", "|"), flush=True)
    if "STOPPING=1" in state.split("\n"):
        break
EOF
    RECEIVER_PID=$!
    PIDS+=("$RECEIVER_PID")
    wait_for_line "$2" '^bound$' 10 || fail "notify receiver did not start"
}

wait_for_line() {
    local file=$1 pattern=$2 seconds=$3 i
    for ((i = 0; i < seconds * 10; i++)); do
        grep -Eq "$pattern" "$file" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# A port on 127.0.0.1 the kernel just reported free (perl is essential on Debian).
free_port() {
    perl -MIO::Socket::INET -e \
        'print IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0, Listen => 1)->sockport'
}

# Starts "$@" with NOTIFY_SOCKET set, expects READY=1, SIGTERM, STOPPING=1, exit 0.
notify_roundtrip() {
    local name=$1 dir=$2
    shift 2
    local sock=$dir/notify.sock received=$dir/notify.log pid status=0
    start_receiver "$sock" "$received"
    NOTIFY_SOCKET=$sock "$@" >"$dir/daemon.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    if ! wait_for_line "$received" '^READY=1$' 30; then
        tail -n 30 "$dir/daemon.log" >&2
        fail "$name: no READY=1 within 30 s"
    fi
    kill -TERM "$pid"
    wait_for_line "$received" '^STOPPING=1$' 10 || fail "$name: no STOPPING=1 after SIGTERM"
    wait "$RECEIVER_PID"
    wait "$pid" || status=$?
    [[ $status == 0 ]] || {
        tail -n 30 "$dir/daemon.log" >&2
        fail "$name: exit status $status after SIGTERM"
    }
    log "  $name: $(paste -sd ' ' "$received" | sed 's/^bound //')"
}

check_sd_notify() {
    log "sd_notify: READY=1 and STOPPING=1 from both daemons"
    local dir=$WORK/notify
    mkdir -p "$dir/control" "$dir/mta"
    cat >"$dir/control/control.toml" <<EOF
socket = "$dir/control/control.sock"
store = "$dir/control/store"
key_file = "$dir/control/control.key"
keyring_file = "$dir/control/keyring"
[mta]
admin_socket = "$dir/mta/mta.sock"
[backup]
key_file = "$dir/control/backup.key"
EOF
    notify_roundtrip way2mail-control "$dir/control" \
        "$CONTROL" --config "$dir/control/control.toml"
    cat >"$dir/mta/mta.toml" <<EOF
hostname = "localhost"
[[listener]]
address = "127.0.0.1:$(free_port)"
role = "mx"
[tls]
cert = "$dir/mta/cert.pem"
key = "$dir/mta/key.pem"
[spool]
path = "$dir/mta/spool"
key_file = "$dir/mta/spool.key"
keyring_file = "$dir/mta/spool.keyring"
[delivery]
enabled = false
[control]
socket = ""
[admin]
socket = "$dir/mta/mta.sock"
EOF
    notify_roundtrip way2mail-mta "$dir/mta" "$MTA" --config "$dir/mta/mta.toml"
    [[ ! -e $dir/mta/mta.sock ]] || fail "way2mail-mta left its admin socket behind"
}

install_tools
for bin in "$MTA" "$CONTROL"; do
    [[ -x $bin ]] || fail "$bin missing: build it first (cargo build --release --bins -p way2mail-mta -p way2mail-control -p way2mail-cli)"
done
WORK=$(mktemp -d /tmp/way2mail-systemd.XXXXXX)
log "$(systemd-analyze --version | head -n 1)"
check_verify
check_security
check_sysusers_tmpfiles
check_configs
check_sd_notify
log "systemd checks passed"
