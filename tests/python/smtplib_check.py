#!/usr/bin/env python3
"""Talks to a running way2mail-mta with Python's standard smtplib and ssl modules.

Run by tests/tests/python_smtplib.rs. Every subcommand prints one `QUEUED <id>` line per
message the server acknowledged and exits 0; any deviation from the expected dialogue
prints `FAIL: ...` on stderr and exits 1. Only 127.0.0.1 is contacted; TLS trusts only the
certificate file given with --cert and verifies it against the IP address 127.0.0.1.
"""

import argparse
import re
import smtplib
import ssl
import sys

HOST = "127.0.0.1"
SENDER = "sender@example.org"
QUEUED = re.compile(r"^2\.0\.0 ([0-9A-Za-z]{26}) queued")
REQUIRED_FEATURES = [
    "pipelining",
    "size",
    "8bitmime",
    "smtputf8",
    "chunking",
    "dsn",
    "enhancedstatuscodes",
]
TIMEOUT = 20


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def tls_context(cert):
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cert)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def check_features(client, when, starttls_expected):
    for feature in REQUIRED_FEATURES:
        check(client.has_extn(feature), f"EHLO {when} lacks {feature.upper()}")
    check(
        client.has_extn("starttls") == starttls_expected,
        f"EHLO {when}: STARTTLS advertised={client.has_extn('starttls')}",
    )
    size = client.esmtp_features.get("size", "").strip()
    check(size.isdigit() and int(size) > 0, f"SIZE without a limit: {size!r}")


def queue_message(client, recipients, body, mail_options=(), rcpt_options=()):
    """MAIL, RCPT for each recipient, DATA; returns the queued id."""
    code, reply = client.mail(SENDER, list(mail_options))
    check(code == 250, f"MAIL: {code} {reply!r}")
    for rcpt in recipients:
        code, reply = client.rcpt(rcpt, list(rcpt_options))
        check(code == 250, f"RCPT {rcpt}: {code} {reply!r}")
    code, reply = client.data(body)
    text = reply.decode("utf-8", "replace")
    match = QUEUED.match(text)
    check(code == 250 and match, f"end of DATA: {code} {text!r}")
    print(f"QUEUED {match.group(1)}", flush=True)


def starttls_send(args):
    client = smtplib.SMTP(HOST, args.port, local_hostname="client.way2mail.test", timeout=TIMEOUT)
    code, _ = client.ehlo()
    check(code == 250, f"EHLO: {code}")
    check_features(client, "before STARTTLS", starttls_expected=True)
    code, reply = client.starttls(context=tls_context(args.cert))
    check(code == 220, f"STARTTLS: {code} {reply!r}")
    check(client.sock.version() in ("TLSv1.2", "TLSv1.3"), f"TLS {client.sock.version()}")
    code, _ = client.ehlo()
    check(code == 250, f"EHLO after STARTTLS: {code}")
    # RFC 3207 §4.2: STARTTLS must not be offered again inside TLS.
    check_features(client, "after STARTTLS", starttls_expected=False)

    recipients = ["one@example.net", "two@example.net", "three@example.com"]
    body = (
        "From: sender@example.org\r\nTo: one@example.net\r\nSubject: smtplib STARTTLS\r\n\r\n"
        "three recipients with DSN parameters\r\n.a line starting with a dot\r\n"
    )
    queue_message(
        client,
        recipients,
        body,
        mail_options=["RET=HDRS", "ENVID=smtplib-envid"],
        rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;one@example.net"],
    )
    utf8_body = (
        "From: sender@example.org\r\nTo: =?utf-8?q?j=C3=B6rg?= <jörg@example.net>\r\n"
        "Subject: smtplib SMTPUTF8\r\n\r\nGrüße, 8-bit body\r\n"
    ).encode("utf-8")
    queue_message(
        client,
        ["jörg@example.net"],
        utf8_body,
        mail_options=["BODY=8BITMIME", "SMTPUTF8"],
    )
    code, _ = client.quit()
    check(code == 221, f"QUIT: {code}")


def smtps_send(args):
    client = smtplib.SMTP_SSL(
        HOST,
        args.port,
        local_hostname="client.way2mail.test",
        context=tls_context(args.cert),
        timeout=TIMEOUT,
    )
    check(client.sock.version() in ("TLSv1.2", "TLSv1.3"), f"TLS {client.sock.version()}")
    code, _ = client.ehlo()
    check(code == 250, f"EHLO: {code}")
    check_features(client, "on implicit TLS", starttls_expected=False)
    queue_message(
        client,
        ["smtps@example.net"],
        "Subject: smtplib SMTP_SSL\r\n\r\nimplicit TLS\r\n",
    )
    client.quit()


def expect_relay_denied(client, rcpt):
    code, reply = client.rcpt(rcpt)
    text = reply.decode("utf-8", "replace")
    check(code == 550 and text.startswith("5.7.1"), f"RCPT {rcpt}: {code} {text!r}, want 550 5.7.1")


def relay_dialogue(client, where):
    code, reply = client.mail(SENDER)
    check(code == 250, f"{where} MAIL: {code} {reply!r}")
    expect_relay_denied(client, "victim@foreign.test")
    expect_relay_denied(client, "victim@example.com.foreign.test")
    # A source route names a relay path; RFC 5321 §3.6.1 says to act on the final address.
    # docmd, not rcpt(): smtplib's address quoting would strip the route.
    code, reply = client.docmd("RCPT", "TO:<@example.com:victim@foreign.test>")
    check(code >= 500, f"{where} source-routed RCPT: {code} {reply!r}")
    for local in ("postmaster@example.com", "User@EXAMPLE.COM"):
        code, reply = client.rcpt(local)
        check(code == 250, f"{where} RCPT {local}: {code} {reply!r}")


def relay_check(args):
    client = smtplib.SMTP(HOST, args.port, local_hostname="client.way2mail.test", timeout=TIMEOUT)
    client.ehlo()
    relay_dialogue(client, "mx")
    client.rset()
    queue_message(client, ["postmaster@example.com"], "Subject: local\r\n\r\nfor example.com\r\n")
    client.quit()

    # Submission after STARTTLS but without authentication is no way around it either.
    client = smtplib.SMTP(HOST, args.submission, local_hostname="client.way2mail.test", timeout=TIMEOUT)
    client.ehlo()
    client.starttls(context=tls_context(args.cert))
    client.ehlo()
    # An untrusted client must authenticate before it may even open a transaction.
    code, reply = client.mail(SENDER)
    check(code == 530, f"submission MAIL without AUTH: {code} {reply!r}")
    client.quit()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("starttls-send", "smtps-send", "relay-check"):
        command = sub.add_parser(name)
        command.add_argument("--port", type=int, required=True)
        command.add_argument("--cert", required=True)
        command.add_argument("--submission", type=int)
    args = parser.parse_args()
    handlers = {"starttls-send": starttls_send, "smtps-send": smtps_send, "relay-check": relay_check}
    try:
        handlers[args.command](args)
    except (Failure, smtplib.SMTPException, ssl.SSLError, OSError) as error:
        print(f"FAIL: {args.command}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
