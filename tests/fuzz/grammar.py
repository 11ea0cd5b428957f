"""Hypothesis strategies for SIP messages, built from the ABNF of RFC 3261 section 25.

Each rule of the grammar that the parser and the validation look at has a strategy here, and
most of them also draw, now and then, the near misses RFC 4475 is made of: unbalanced quotes,
LWS where none is allowed, empty parameters, escapes that are not escapes, out-of-range
numbers, duplicated single-value headers, a Content-Length that lies. `messages()` assembles a
whole datagram; `mutants()` then damages it at the byte level (cut, flip, duplicate a line).

Small pools of branches, Call-IDs, tags and sources make the messages of one example collide,
so that retransmissions, CANCEL and ACK matching and in-dialog requests are reached.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import strategies as st

TOKEN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
UNRESERVED = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()"
METHODS = [
    *("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE"),
    *("NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"),
]
BRANCHES = ("z9hG4bK1", "z9hG4bK2", "z9hG4bK1", "z9hG4bK2", "z9hG4bK", "1234", "")
CALL_IDS = ("c1@fuzz", "c2@fuzz")
TAGS = ("t1", "t2", "")
SOURCES = (("127.0.0.1", 5060), ("127.0.0.1", 5070), ("192.0.2.9", 5060))

token = st.text(TOKEN, min_size=1, max_size=10)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`good` nine times in ten, `bad` (a near miss) otherwise."""
    # Not one_of([good] * 9 + [bad]): Hypothesis merges the equal branches. 7 is no boundary
    # value, which Hypothesis would draw far more often than one time in ten.
    return st.integers(0, 9).flatmap(lambda i: bad if i == 7 else good)


# An occasional value from outside the grammar: CTL, quotes, separators, non-ASCII.
junk = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=12
)
digits = mostly(
    st.integers(0, 2**31 - 1).map(str),
    st.sampled_from(["0", "00070", "-1", "4294967296", "9" * 40, "", "1e3", "0x10"]),
)


def _maybe_junk(s: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return mostly(s, junk)


@st.composite
def escaped(draw: st.DrawFn) -> str:
    return "%" + draw(st.sampled_from(["41", "3A", "40", "00", "2", "ZZ", "25"]))


user = st.lists(
    st.one_of(
        st.text(UNRESERVED, min_size=1, max_size=6),
        escaped(),
        st.sampled_from(["&", "=", "+", "$", ",", ";", "?", "/"]),
    ),
    min_size=1,
    max_size=5,
).map("".join)
hostname = st.lists(
    st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=8), min_size=1, max_size=4
).map(".".join)
ipv4 = st.tuples(*[st.integers(0, 300)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.sampled_from(["[::1]", "[2001:db8::10]", "[::1", "::1", "[fe80::1%eth0]"])
host = mostly(
    st.one_of(hostname, st.sampled_from(["example.com", "127.0.0.1", "[::1]"])),
    st.one_of(ipv4, ipv6, st.just("")),
)
port = mostly(st.one_of(st.none(), st.just(5060), st.integers(1, 65535)), st.integers(0, 70000))


def _hostport(h: str, p: int | None) -> str:
    return h if p is None else f"{h}:{p}"


param = st.one_of(
    st.tuples(token, st.one_of(st.none(), token, st.just(""), st.just('"quoted;value"'))).map(
        lambda kv: kv[0] if kv[1] is None else f"{kv[0]}={kv[1]}"
    ),
    st.just(""),  # an empty parameter: ";;"
    st.sampled_from(["lr", "transport=udp", "user=phone", "tag=t1", "maddr=192.0.2.1", "q=0.5"]),
)
params = st.lists(param, max_size=4).map(lambda ps: "".join(f";{p}" for p in ps))
uri_headers = st.lists(st.tuples(token, token), max_size=2).map(
    lambda hs: ("?" + "&".join(f"{k}={v}" for k, v in hs)) if hs else ""
)
scheme = mostly(
    st.sampled_from(["sip", "sip", "sips", "tel"]),
    st.sampled_from(["SIP", "mailto", "soap.beep", "x"]),
)
callee = st.sampled_from(["4420001", "4420002", "alice", "4400"])


@st.composite
def uri(draw: st.DrawFn) -> str:
    s = draw(scheme)
    if s == "tel":
        return f"tel:{draw(st.one_of(digits, user))}{draw(params)}"
    userinfo = draw(mostly(callee, st.one_of(st.just(""), user)))
    userinfo = f"{userinfo}@" if userinfo else ""
    text = f"{s}:{userinfo}{_hostport(draw(host), draw(port))}{draw(params)}{draw(uri_headers)}"
    return draw(_maybe_junk(st.just(text)))


@st.composite
def quoted_string(draw: st.DrawFn) -> str:
    inner = draw(
        st.lists(
            st.one_of(
                st.text(TOKEN + " ,;<>:@", max_size=6), st.sampled_from(['\\"', "\\\\", "\\\x07"])
            ),
            max_size=4,
        )
    )
    closing = draw(mostly(st.just('"'), st.just("")))  # sometimes unbalanced
    return '"' + "".join(inner) + closing


display_name = mostly(
    st.sampled_from(["", "Alice ", '"Alice Smith" ']),
    st.one_of(
        st.just(""),
        token.map(lambda t: t + " "),
        quoted_string().map(lambda q: q + " "),
        st.just("Bell, Alexander "),
    ),
)


@st.composite
def name_addr(draw: st.DrawFn, tag: bool = False) -> str:
    u = draw(uri())
    tag_param = f";tag={draw(st.sampled_from(TAGS))}" if tag else ""
    form = draw(st.integers(0, 3))
    if form == 0:  # addr-spec
        return f"{u}{tag_param}{draw(params)}"
    lws = draw(mostly(st.just(""), st.just(" ")))
    return f"{draw(display_name)}<{lws}{u}{lws}>{tag_param}{draw(params)}"


@st.composite
def via(draw: st.DrawFn) -> str:
    version = draw(mostly(st.just("SIP/2.0"), st.sampled_from(["SIP/7.0", "SIP / 2.0 "])))
    transport = draw(mostly(st.just("UDP"), st.sampled_from(["TCP", "TLS", "udp", "SCTP", "X"])))
    branch = draw(st.sampled_from(BRANCHES))
    bparam = f";branch={branch}" if branch else ""
    extra = draw(mostly(st.sampled_from(["", ";rport"]), st.sampled_from([";ttl=1", ";;", ";x="])))
    return f"{version}/{transport} {_hostport(draw(host), draw(port))}{bparam}{extra}"


def _header_values(method: str) -> dict[str, st.SearchStrategy[str]]:
    return {
        "Via": via(),
        "From": name_addr(tag=True),
        "To": name_addr(tag=False) | name_addr(tag=True),
        "Call-ID": mostly(st.sampled_from(CALL_IDS), st.one_of(token, junk)),
        "CSeq": st.tuples(
            mostly(st.sampled_from(["1", "2", "3"]), digits),
            mostly(st.just(method), st.one_of(st.sampled_from(METHODS), token)),
        ).map(" ".join),
        "Max-Forwards": st.one_of(st.just("70"), digits),
        "Contact": st.one_of(
            name_addr(), st.just("*"), st.lists(name_addr(), min_size=2, max_size=3).map(", ".join)
        ),
        "Route": name_addr(),
        "Record-Route": name_addr(),
        "Require": st.lists(
            st.sampled_from(["timer", "100rel", "foo", "replaces"]), max_size=3
        ).map(", ".join),
        "Supported": st.sampled_from(["timer", "100rel, timer", ""]),
        "Session-Expires": st.one_of(digits, st.just("1800;refresher=uac")),
        "Min-SE": digits,
        "Expires": digits,
        "Content-Type": st.sampled_from(
            ["application/sdp", "text/plain", "multipart/mixed;boundary=x", ""]
        ),
        "Proxy-Authorization": st.sampled_from(
            [
                'Digest username="a", realm="r", nonce="n", uri="sip:x", response="0"',
                "Basic abc",
                "Digest",
            ]
        ),
        "Authorization": st.sampled_from(
            ['Digest username="a", nonce="\x80"', "NoOneKnows opaque=x"]
        ),
        "Event": token,
        "X-Extension": junk,
        "Date": st.sampled_from(["Fri, 01 Jan 2010 16:00:00 EST", "Sat, 13 Nov 2010 23:29:00 GMT"]),
    }


_MANDATORY = ("Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards")
COMPACT = {
    "Via": "v",
    "From": "f",
    "To": "t",
    "Call-ID": "i",
    "Contact": "m",
    "Content-Type": "c",
    "Content-Length": "l",
    "Supported": "k",
    "Session-Expires": "x",
}
SDP = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    b"m=audio 20000 RTP/AVP 0\r\n"
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    """One datagram: a request (mostly) or a response, from the grammar with near misses."""
    method = draw(mostly(st.sampled_from(METHODS), token))
    values = _header_values(method)
    is_response = draw(st.integers(0, 5)) == 3
    if is_response:
        code = draw(
            st.one_of(
                st.integers(100, 699).map(str), st.sampled_from(["99", "4294967301", "2000", ""])
            )
        )
        start = f"SIP/2.0 {code} {draw(st.one_of(token, junk))}"
    else:
        sep = draw(mostly(st.just(" "), st.sampled_from(["  ", "\t"])))
        version = draw(
            mostly(st.just("SIP/2.0"), st.sampled_from(["SIP/2.0 ", "SIP/7.0", "sip/2.0"]))
        )
        target = draw(mostly(uri(), uri().map(lambda u: f"<{u}>")))
        start = f"{method}{sep}{target}{sep}{version}"
    names = list(_MANDATORY)
    names = [n for n in names if draw(st.integers(0, 60)) != 37]  # now and then one is missing
    optional = sorted(set(values) - set(_MANDATORY))
    names += draw(
        st.lists(mostly(st.sampled_from(optional), st.sampled_from(_MANDATORY)), max_size=5)
    )
    draw(st.randoms(use_true_random=False)).shuffle(names)
    lines = [start]
    for name in names:
        value = draw(values[name])
        shown = COMPACT.get(name, name) if draw(st.integers(0, 4)) == 3 else name
        if draw(st.integers(0, 6)) == 3:
            shown = shown.lower()
        fold = draw(st.integers(0, 10)) == 3 and " " in value
        if fold:
            value = value.replace(" ", "\r\n ", 1)
        lines.append(f"{shown}:{draw(st.sampled_from([' ', '', '   ']))}{value}")
    body = draw(st.one_of(st.just(b""), st.just(SDP), st.binary(max_size=64)))
    cl = draw(st.integers(0, 9))
    if cl < 6:
        lines.append(f"Content-Length: {len(body)}")
    elif cl == 6:
        lines.append(f"Content-Length: {draw(digits)}")
    elif cl == 7:
        lines += [f"Content-Length: {len(body)}", f"l: {len(body)}"]
    head = "\r\n".join(lines) + "\r\n\r\n"
    return head.encode("utf-8", "surrogatepass") + body


def mutants(data: bytes, seed: int, count: int) -> list[bytes]:
    """`count` byte-level mutants of `data`: cut, flip, insert, duplicate or drop a line."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        d = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(6)
            i = rng.randrange(len(d) + 1)
            if op == 0:
                del d[i:]
            elif op == 1 and d:
                d[min(i, len(d) - 1)] = rng.randrange(256)
            elif op == 2:
                d[i:i] = rng.choice(
                    [b"\r\n", b" ", b",", b";", b'"', b"<", b">", b"\x00", b"%", b":"]
                )
            else:
                lines = bytes(d).split(b"\r\n")
                j = rng.randrange(len(lines))
                if op == 3:
                    lines.insert(j, lines[j])
                elif op == 4 and len(lines) > 1:
                    del lines[j]
                else:
                    lines[j] = lines[j] * rng.randint(2, 50)
                d = bytearray(b"\r\n".join(lines))
        out.append(bytes(d))
    return out
