#!/usr/bin/env python3
"""Verify every DKIM-Signature of the message on stdin with dkimpy.

Keys are looked up with dnspython at the nameserver given with --nameserver
(ADDRESS:PORT, e.g. the tests' stub DNS), never with the system resolver. Prints one
line per signature:

    signature 0: d=acme.example s=w2m-20240101-rsa a=rsa-sha256: pass

and exits 0 only when there is at least one signature and every one passes (1 when
one fails, 2 on a usage error or when the message has none).

Needs dkimpy with Ed25519 support (pip install 'dkimpy[ed25519]') and dnspython.
"""

import argparse
import sys

import dkim
import dns.flags
import dns.message
import dns.query
import dns.rdatatype


def nameserver(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected ADDRESS:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def make_dnsfunc(host, port):
    """dkimpy's dnsfunc: the TXT record at NAME as bytes (strings joined), or None."""

    def dnsfunc(name, timeout=5):
        if isinstance(name, bytes):
            name = name.decode("ascii")
        query = dns.message.make_query(name, dns.rdatatype.TXT)
        answer = dns.query.udp(query, host, port=port, timeout=timeout)
        if answer.flags & dns.flags.TC:
            answer = dns.query.tcp(query, host, port=port, timeout=timeout)
        for rrset in answer.answer:
            if rrset.rdtype != dns.rdatatype.TXT:
                continue
            for rdata in rrset:
                return b"".join(rdata.strings)
        return None

    return dnsfunc


def tags(header_value):
    """The d=, s= and a= tags of a DKIM-Signature value (for the report line)."""
    out = {}
    for part in header_value.split(b";"):
        key, sep, value = part.partition(b"=")
        if sep:
            out[key.strip().decode("ascii", "replace")] = b"".join(value.split()).decode(
                "ascii", "replace"
            )
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nameserver", required=True, type=nameserver)
    args = parser.parse_args()
    host, port = args.nameserver
    message = sys.stdin.buffer.read()

    headers, _ = dkim.rfc822_parse(message)
    signatures = [value for name, value in headers if name.lower() == b"dkim-signature"]
    if not signatures:
        print("no DKIM-Signature in the message")
        return 2

    dnsfunc = make_dnsfunc(host, port)
    failed = 0
    for idx, value in enumerate(signatures):
        t = tags(value)
        label = f"signature {idx}: d={t.get('d', '?')} s={t.get('s', '?')} a={t.get('a', '?')}"
        try:
            ok = dkim.DKIM(message).verify(idx=idx, dnsfunc=dnsfunc)
            reason = ""
        except dkim.DKIMException as e:
            ok = False
            reason = f" ({e})"
        print(f"{label}: {'pass' if ok else 'fail'}{reason}")
        failed += 0 if ok else 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
