#!/usr/bin/env python3
"""One HTTPS request with Python's own client (urllib, the ssl module), for the
black-box API tests: prints {"status", "headers", "body"} as one JSON line. The
body is parsed as JSON when the response says it is JSON, else given as text.

usage: http_request.py METHOD URL --cafile PEM [--key API_KEY] [--header 'Name: value']...
                       [--data-file PATH | --json TEXT] [--content-type TYPE]
"""

import argparse
import json
import ssl
import sys
import urllib.error
import urllib.request


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("method")
    p.add_argument("url")
    p.add_argument("--cafile", required=True)
    p.add_argument("--key")
    p.add_argument("--header", action="append", default=[])
    p.add_argument("--data-file")
    p.add_argument("--json")
    p.add_argument("--content-type")
    a = p.parse_args()

    context = ssl.create_default_context(cafile=a.cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # The test certificate names localhost and 127.0.0.1.
    data = None
    if a.data_file:
        with open(a.data_file, "rb") as f:
            data = f.read()
    elif a.json is not None:
        data = a.json.encode()
    req = urllib.request.Request(a.url, data=data, method=a.method)
    if a.key:
        req.add_header("Authorization", "Bearer " + a.key)
    if a.content_type:
        req.add_header("Content-Type", a.content_type)
    elif a.json is not None:
        req.add_header("Content-Type", "application/json")
    for h in a.header:
        name, _, value = h.partition(":")
        req.add_header(name.strip(), value.strip())
    try:
        with urllib.request.urlopen(req, context=context, timeout=60) as r:
            status, message, raw = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, message, raw = e.code, e.headers, e.read()
    # The header block is case-insensitive; its dict copy is not.
    content_type = message.get("Content-Type", "")
    headers = dict(message)
    if "json" in content_type:
        body = json.loads(raw)
    else:
        body = raw.decode("utf-8", "replace")
    print(json.dumps({"status": status, "headers": headers, "body": body}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
