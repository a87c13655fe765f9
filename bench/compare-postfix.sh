#!/usr/bin/env bash
# End to end, way2mail-mta against Postfix on the same machine in the same run:
#   way2mail-bench smtp -> Postfix (relayhost = the sink)          -> way2mail-bench sink
#   way2mail-bench smtp -> way2mail-mta (route `*` = the sink)     -> way2mail-bench sink
# with the same load (default 20,000 messages of 5 KB over 50 connections) and a fresh
# sink per run that exits once it has counted every message. Prints ingest msgs/s, drain
# time and end-to-end msgs/s for each, way2mail-mta's end-to-end figure as a multiple of
# Postfix's and as a share of the two-hop ceiling (half of what Postfix's smtp-source
# pushes straight into smtp-sink with the same load, measured right before each of
# way2mail-mta's runs), and the daemon's CPU per message.
#
#   sudo bench/compare-postfix.sh [CONNECTIONS] [MESSAGES] [SIZE]
#
# Needs root: installs Debian's postfix package when missing ("No configuration", the
# service not started), writes /etc/postfix/main.cf for the run and removes it afterwards
# (master.cf is restored from a copy), starts Postfix with `postfix start` and stops it at
# the end. Refuses to touch a Postfix that was configured before (a main.cf it did not
# write) or is running. Postfix's queue is /var/spool/postfix, on the same disk as the
# daemon's spool under target/. Everything listens on 127.0.0.1; Postfix's port 25
# listener is disabled.
#
# Environment: POSTFIX_CONCURRENCY (default 20, Postfix's own default) is Postfix's
# default_destination_concurrency_limit; BACKENDS (default "io_uring epoll") and
# SHAPING_CONNECTIONS / SHAPING_PER_CONNECTION / SHAPING_BACKOFF_AFTER apply to
# way2mail-mta as in bench/e2e.sh.
set -euo pipefail

# shellcheck source=bench/e2e.sh
source "$(dirname "${BASH_SOURCE[0]}")/e2e.sh"

CONNECTIONS=${1:-50}
MESSAGES=${2:-20000}
SIZE=${3:-5120}
POSTFIX_CONCURRENCY=${POSTFIX_CONCURRENCY:-20}
MARK="# written by way2mail bench/compare-postfix.sh; removed when it ends"
PF_LOG=/var/log/postfix-way2mail-bench.log
PF_STARTED=
PF_CONFIGURED=

die() {
    echo "compare-postfix: $*" >&2
    exit 1
}

cleanup() {
    local status=$?
    if [[ -n $PF_STARTED ]]; then
        postfix stop >/dev/null 2>&1 || true
    fi
    if [[ -n $PF_CONFIGURED ]]; then
        # Anything left in the queue was ours.
        postsuper -d ALL >/dev/null 2>&1 || true
        rm -f /etc/postfix/main.cf "$PF_LOG"
        cp "$E2E_WORK/master.cf.orig" /etc/postfix/master.cf
    fi
    e2e_cleanup
    exit "$status"
}

install_postfix() {
    if command -v postfix >/dev/null && [[ -f /etc/postfix/master.cf ]]; then
        return
    fi
    echo "== installing postfix (No configuration; the service is not started)"
    local policy=/usr/sbin/policy-rc.d own_policy=
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        own_policy=1
    fi
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    local status=0
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends \
        postfix </dev/null || status=$?
    if ((status != 0)); then
        timeout 300 apt-get update -q
        status=0
        DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q \
            --no-install-recommends postfix </dev/null || status=$?
    fi
    [[ -n $own_policy ]] && rm -f "$policy"
    ((status == 0)) || die "apt-get install postfix failed"
}

# A relay for 127.0.0.0/8 to [127.0.0.1]:SINKPORT with a listener on 127.0.0.1:PORT only.
configure_postfix() { # port sinkport
    if [[ -f /etc/postfix/main.cf ]] && ! grep -qxF "$MARK" /etc/postfix/main.cf; then
        die "/etc/postfix/main.cf exists and is not ours: not touching a configured Postfix"
    fi
    if [[ -f /etc/postfix/main.cf ]] && postfix status >/dev/null 2>&1; then
        die "Postfix is running: stop it first"
    fi
    cp /etc/postfix/master.cf "$E2E_WORK/master.cf.orig"
    echo "$MARK" >/etc/postfix/main.cf
    PF_CONFIGURED=1
    postconf -e \
        "compatibility_level = 3.6" \
        "myhostname = postfix-bench.localhost" \
        "inet_interfaces = loopback-only" \
        "inet_protocols = ipv4" \
        "mydestination =" \
        "local_recipient_maps =" \
        "alias_maps =" \
        "alias_database =" \
        "relayhost = [127.0.0.1]:$2" \
        "mynetworks = 127.0.0.0/8" \
        "smtpd_relay_restrictions = permit_mynetworks, reject" \
        "default_destination_concurrency_limit = $POSTFIX_CONCURRENCY" \
        "smtp_tls_security_level = none" \
        "smtpd_tls_security_level = none" \
        "biff = no" \
        "maillog_file = $PF_LOG"
    # No port 25; our port instead; no chroot (Debian's chroot needs files copied in).
    postconf -M# smtp/inet
    postconf -M "127.0.0.1:$1/inet=127.0.0.1:$1 inet n - n - - smtpd"
    postconf -F '*/*/chroot = n'
    postfix check
    postsuper -d ALL >/dev/null 2>&1 || true
}

postfix_run() { # port
    local sink_out=$E2E_WORK/sink-postfix.json
    e2e_start_sink "$MESSAGES" "$sink_out"
    configure_postfix "$1" "$SINK_PORT"
    postfix start >/dev/null 2>&1 || die "postfix start failed: $(tail -n 20 "$PF_LOG" 2>/dev/null)"
    PF_STARTED=1
    e2e_wait_port "$1"
    e2e_measure "Postfix $(postconf -h mail_version)" "$1" "$CONNECTIONS" "$MESSAGES" "$SIZE"
    POSTFIX_E2E=${E2E_RESULT##* }
    postfix stop >/dev/null
    PF_STARTED=
    local queue
    queue=$(postqueue -p 2>&1 || true)
    [[ $queue == *"Mail queue is empty"* ]] || echo "    Postfix queue not empty: $queue"
}

# The two-hop ceiling: Postfix's smtp-source straight into smtp-sink with the same load
# (connections kept open, -d, as way2mail-bench smtp does). A relay makes two hops of
# every message on the same cores, so half this rate is the most any relay could reach
# end to end on this machine at this moment. Sets CEILING (msgs/s, the two-hop half).
ceiling_run() {
    local port pid start done status=0
    port=$(e2e_free_port)
    # As root smtp-sink insists on dropping privileges (-u).
    /usr/sbin/smtp-sink -u nobody "127.0.0.1:$port" 1024 &
    pid=$!
    e2e_wait_port "$port"
    start=$(e2e_now)
    timeout "$E2E_LIMIT_SECS" /usr/sbin/smtp-source -d -s "$CONNECTIONS" -m "$MESSAGES" \
        -l "$SIZE" -f bench@source.example -t sink@sink.example "127.0.0.1:$port" || status=$?
    done=$(e2e_now)
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    ((status == 0)) || die "smtp-source failed ($status)"
    local rate
    rate=$(e2e_rate "$MESSAGES" "$(e2e_secs "$start" "$done")")
    CEILING=$((rate / 2))
    printf '%-22s %6s msgs/s one hop; two-hop ceiling %s msgs/s\n' \
        "smtp-source -> sink:" "$rate" "$CEILING"
}

main() {
    [[ $(id -u) == 0 ]] || die "run as root (it installs and configures Postfix)"
    install_postfix
    e2e_prepare
    trap cleanup EXIT
    echo "== $CONNECTIONS connections, $MESSAGES messages of $SIZE bytes; Postfix" \
        "destination concurrency $POSTFIX_CONCURRENCY; way2mail-mta shaping:" \
        "${SHAPING_CONNECTIONS:-default} connections," \
        "${SHAPING_PER_CONNECTION:-default} messages per connection, back-off after" \
        "${SHAPING_BACKOFF_AFTER:-default} failures"
    postfix_run "$(e2e_free_port)"
    local io ours
    for io in ${BACKENDS:-io_uring epoll}; do
        # Right before each run: this machine's speed changes from minute to minute.
        ceiling_run
        e2e_mta "$io" "$CONNECTIONS" "$MESSAGES" "$SIZE"
        ours=${E2E_RESULT##* }
        printf '    way2mail-mta (%s) end to end = %s x Postfix = %s %% of the two-hop ceiling\n' \
            "$io" \
            "$(awk -v a="$ours" -v b="$POSTFIX_E2E" 'BEGIN { printf "%.1f", (b > 0 ? a / b : 0) }')" \
            "$(awk -v a="$ours" -v b="$CEILING" 'BEGIN { printf "%.0f", (b > 0 ? 100 * a / b : 0) }')"
    done
}

main "$@"
