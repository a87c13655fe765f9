#!/usr/bin/env python3
"""A webhook receiver for the tests, written as a tenant's would be: an HTTPS
server (Python's http.server and ssl) that checks every post's
Way2Mail-Signature with the endpoint's secret (hmac, constant-time compare, the
timestamp within five minutes) and records what it got.

    webhook_receiver.py --cert C --key K --secret-file S --out O [--fail-first N]
                        [--always-fail]

Prints the port it listens on (127.0.0.1) as its first line. Each post becomes
one JSON line in O: {"status", "verified", "body", "webhook"}. The secret file is
read at every post (the test writes it once the endpoint exists); while it is
missing, posts are answered 503. The first N posts are answered 503 without
looking at them (a receiver that is down); with --always-fail every post is 500.
"""

import argparse
import hashlib
import hmac
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_SECS = 300


def verify(secret, header, body):
    """Whether `header` (t=..,v1=..) signs `body` with `secret`, recently."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        t = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - t) > TOLERANCE_SECS:
        return False
    expected = hmac.new(
        secret.encode(), str(t).encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, fields.get("v1", ""))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--secret-file", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--fail-first", type=int, default=0)
    p.add_argument("--always-fail", action="store_true")
    args = p.parse_args()
    lock = threading.Lock()
    state = {"to_fail": args.fail_first}

    def record(entry):
        with lock, open(args.out, "a", encoding="utf-8") as out:
            out.write(json.dumps(entry) + "\n")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def answer(self, status):
            payload = b"{}"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            webhook = self.headers.get("Way2Mail-Webhook-Id")
            with lock:
                failing = state["to_fail"] > 0
                if failing:
                    state["to_fail"] -= 1
            if failing or args.always_fail:
                status = 503 if failing else 500
                record({"status": status, "verified": None, "webhook": webhook})
                return self.answer(status)
            try:
                with open(args.secret_file, encoding="utf-8") as f:
                    secret = f.read().strip()
            except FileNotFoundError:
                record({"status": 503, "verified": None, "webhook": webhook})
                return self.answer(503)
            ok = verify(secret, self.headers.get("Way2Mail-Signature", ""), body)
            status = 200 if ok else 401
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            record({"status": status, "verified": ok, "body": parsed, "webhook": webhook})
            self.answer(status)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(args.cert, args.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
