"""Schemathesis hooks for .ci/api.sh (named by `hooks` in the config it writes).

POST /v1/messages/raw takes `message/rfc822`, which schemathesis cannot generate
from the schema (`type: string`): this draws messages instead, some well-formed from
the tenant's domain (so that they reach signing and the spool), some with random
header fields, line ends, long lines, NULs and 8-bit text (which must be refused
with a 4xx, never a 5xx).
"""

import schemathesis
from hypothesis import strategies as st

SENDERS = ["ci@acme.example", "Acme CI <ci@acme.example>", '"Acme, CI" <ci@acme.example>']

header_name = st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,24}\Z")
# Header values and body lines: printable ASCII most of the time, anything sometimes.
value_text = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
    st.text(max_size=80),
)
line_end = st.sampled_from(["\r\n", "\n", "\r\n", "\r"])


@st.composite
def raw_message(draw) -> bytes:
    end = draw(line_end)
    fields = []
    if draw(st.integers(0, 9)) > 0:
        fields.append(("From", draw(st.sampled_from(SENDERS) | value_text)))
    if draw(st.booleans()):
        fields.append(("To", draw(st.sampled_from(["someone@remote.example", "a@b.example, c@d.example"]) | value_text)))
    if draw(st.booleans()):
        fields.append(("Subject", draw(value_text)))
    fields += draw(st.lists(st.tuples(header_name, value_text), max_size=4))
    fields = draw(st.permutations(fields))
    head = "".join(f"{name}: {value}{end}" for name, value in fields)
    if draw(st.integers(0, 9)) == 0:
        # A folded field, or a line that is no field at all.
        head += draw(st.sampled_from([" continued" + end, "not a header" + end, ":" + end]))
    lines = draw(st.lists(value_text | st.just("x" * 1000) | st.just("."), max_size=6))
    body = end.join(lines) + (end if lines and draw(st.booleans()) else "")
    separator = end if draw(st.integers(0, 9)) > 0 else ""
    data = (head + separator + body).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 19)) == 0:
        data = draw(st.binary(max_size=200))
    return data


schemathesis.openapi.media_type("message/rfc822", raw_message())
