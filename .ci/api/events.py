"""Follows GET /v1/events page by page (limit=1) as docs/api.md describes; .ci/api.sh.

    events.py API CA KEY TYPE:ID... ; prints the number of events read.

Every event of the tenant must come exactly once, oldest first; each expected
TYPE:ID must be among them; the last `next`, given back as `after`, must answer an
empty page with the same `next` (a feed at its tail).
"""

import json
import ssl
import sys
import urllib.request

api, ca, key, *expected = sys.argv[1:]
context = ssl.create_default_context(cafile=ca)


def page(query):
    request = urllib.request.Request(f"{api}/v1/events?{query}", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, context=context, timeout=20) as response:
        if response.status != 200:
            sys.exit(f"GET /v1/events?{query}: {response.status}")
        return json.load(response)


def fail(message):
    sys.exit(f"GET /v1/events: {message}")


events, after, pages = [], None, 0
while True:
    body = page("limit=1" + (f"&after={after}" if after else ""))
    pages += 1
    if len(body["events"]) > 1:
        fail(f"limit=1 gave {len(body['events'])} events")
    events += body["events"]
    if body["events"] and not body["more"] and pages == 1 and len(expected) > 1:
        fail(f"a full page (limit=1) says more=false: {body}")
    if body["next"] is None:
        if events:
            fail(f"no `next` after {len(events)} events: {body}")
        break
    if not body["more"]:
        tail = page(f"limit=1&after={body['next']}")
        if tail["events"] or tail["next"] != body["next"]:
            fail(f"at the tail, after={body['next']} gave {tail}")
        break
    after = body["next"]
    if pages > 1000:
        fail("more than 1000 pages")

seen = {f"{e['type']}:{e['message_id']}" for e in events}
missing = [x for x in expected if x not in seen]
if missing:
    fail(f"missing {missing} in {events}")
keys = [(e["time"], e["message_id"], e["recipient"], e["type"]) for e in events]
if len(set(keys)) != len(keys):
    fail(f"an event came twice: {events}")
if [e["time"] for e in events] != sorted(e["time"] for e in events):
    fail(f"not oldest first: {events}")
whole = page("limit=1000")
if whole["events"] != events:
    fail(f"limit=1000 gave other events than the pages of 1: {whole['events']} vs {events}")
print(len(events))
