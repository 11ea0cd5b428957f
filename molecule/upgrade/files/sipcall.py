#!/usr/bin/python3
"""Test peers for the upgrade scenario, standard library only, loopback only.

  sipcall.py uas --port 5070 --result F        answer every INVITE with 200 + SDP, 200 to BYE
  sipcall.py uac --target 127.0.0.1:5060 --port 5080 --result F --hold S
                                               place one call, ACK the 200, hold it until a
                                               BYE arrives (answered 200) or S seconds pass
  sipcall.py register --target ... --user 1001 --password P --result F
                                               REGISTER with digest auth (MD5), record the answer
  sipcall.py dbcounts DIR                      row counts of every table of every SQLite file

Each peer writes its state as JSON to --result after every step, for the scenario to read.
"""

import argparse
import hashlib
import json
import random
import re
import socket
import sqlite3
import sys
import time
from pathlib import Path


def rid() -> str:
    return "%016x" % random.getrandbits(64)


def parse(data: bytes):
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers.setdefault(k.strip().lower(), []).append(v.strip())
    return lines[0], headers, body


def h(headers, name, default=""):
    return headers.get(name.lower(), [default])[0]


def save(path, state):
    Path(path).write_text(json.dumps(state, indent=1))


# The media address is a documentation one (RFC 5737): sipd refuses loopback in c= (issue 14,
# media.refused_networks) and no RTP flows in this test, only signalling.
SDP = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def respond(sock, addr, headers, status, reason, to_tag=None, extra="", body=""):
    to = h(headers, "to")
    if to_tag and ";tag=" not in to:
        to += f";tag={to_tag}"
    msg = f"SIP/2.0 {status} {reason}\r\n"
    for via in headers.get("via", []):
        msg += f"Via: {via}\r\n"
    msg += f"From: {h(headers, 'from')}\r\nTo: {to}\r\nCall-ID: {h(headers, 'call-id')}\r\n"
    msg += f"CSeq: {h(headers, 'cseq')}\r\n{extra}"
    if body:
        msg += "Content-Type: application/sdp\r\n"
    msg += f"Content-Length: {len(body)}\r\n\r\n{body}"
    sock.sendto(msg.encode(), addr)


def uas(args):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", args.port))
    state = {"invites": 0, "answered": [], "byes": []}
    tags: dict[str, str] = {}
    save(args.result, state)
    while True:
        data, addr = sock.recvfrom(65535)
        first, headers, _ = parse(data)
        method = first.split(" ", 1)[0]
        call_id = h(headers, "call-id")
        if method == "INVITE":
            tag = tags.setdefault(call_id, rid()[:8])
            if call_id not in state["answered"]:
                state["invites"] += 1
                state["answered"].append(call_id)
            contact = f"Contact: <sip:uas@127.0.0.1:{args.port}>\r\n"
            respond(sock, addr, headers, 200, "OK", tag, contact, SDP.format(port=40000))
        elif method == "BYE":
            respond(sock, addr, headers, 200, "OK")
            state["byes"].append(call_id)
        elif method in ("OPTIONS", "CANCEL"):
            respond(sock, addr, headers, 200, "OK")
        save(args.result, state)


def request(method, uri, target_port, local_port, call_id, from_tag, cseq, to="", extra="", body=""):
    msg = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{rid()};rport\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag={from_tag}\r\n"
        f"To: {to or '<' + uri + '>'}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
        f"Contact: <sip:caller@127.0.0.1:{local_port}>\r\n{extra}"
    )
    if body:
        msg += "Content-Type: application/sdp\r\n"
    return (msg + f"Content-Length: {len(body)}\r\n\r\n{body}").encode()


def uac(args):
    host, port = args.target.rsplit(":", 1)
    target = (host, int(port))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", args.port))
    call_id, from_tag = f"{rid()}@molecule-uac", rid()[:8]
    uri = f"sip:{args.number}@{host}:{port}"
    invite = request("INVITE", uri, port, args.port, call_id, from_tag, 1,
                     body=SDP.format(port=args.port + 2))
    state = {"call_id": call_id, "final": None, "answered": False, "bye_received": False,
             "ended": None}
    save(args.result, state)
    deadline = time.monotonic() + args.hold
    next_send, gap = time.monotonic(), 0.5
    while time.monotonic() < deadline:
        if state["final"] is None and time.monotonic() >= next_send:
            sock.sendto(invite, target)
            next_send, gap = time.monotonic() + gap, min(gap * 2, 4)
        sock.settimeout(0.2)
        try:
            data, addr = sock.recvfrom(65535)
        except socket.timeout:
            continue
        first, headers, _ = parse(data)
        if first.startswith("SIP/2.0"):
            status = int(first.split(" ")[1])
            if "INVITE" in h(headers, "cseq") and status >= 200:
                state["final"] = status
                if status < 300:
                    state["answered"] = True
                    m = re.search(r"<([^>]+)>", h(headers, "contact", f"<{uri}>"))
                    ack = request("ACK", m.group(1) if m else uri, port, args.port, call_id,
                                  from_tag, 1, to=h(headers, "to"))
                    sock.sendto(ack, addr)
                else:
                    state["ended"] = f"final {status}"
                    save(args.result, state)
                    return 0
        elif first.startswith("BYE"):
            respond(sock, addr, headers, 200, "OK")
            state["bye_received"] = True
            state["ended"] = "bye"
            save(args.result, state)
            return 0
        save(args.result, state)
    state["ended"] = "hold limit"
    save(args.result, state)
    return 1


def register(args):
    host, port = args.target.rsplit(":", 1)
    target = (host, int(port))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    lport = sock.getsockname()[1]
    call_id, tag, uri = f"{rid()}@molecule-reg", rid()[:8], f"sip:{host}:{port}"
    aor = f"<sip:{args.user}@{host}>"
    auth, state = "", {"statuses": []}
    for cseq in (1, 2, 3):
        msg = (
            f"REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK{rid()};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: {aor};tag={tag}\r\nTo: {aor}\r\nCall-ID: {call_id}\r\n"
            f"CSeq: {cseq} REGISTER\r\nContact: <sip:{args.user}@127.0.0.1:{lport}>\r\n"
            f"Expires: 3600\r\n{auth}Content-Length: 0\r\n\r\n"
        ).encode()
        sock.sendto(msg, target)
        sock.settimeout(5)
        try:
            first, headers, _ = parse(sock.recvfrom(65535)[0])
        except socket.timeout:
            state["statuses"].append("timeout")
            break
        status = int(first.split(" ")[1])
        state["statuses"].append(status)
        challenge = h(headers, "www-authenticate")
        if status != 401 or not challenge:
            break
        params = dict(re.findall(r'(\w+)="?([^",]+)"?', challenge))
        ha1 = hashlib.md5(f"{args.user}:{params.get('realm', '')}:{args.password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"REGISTER:{uri}".encode()).hexdigest()
        if "qop" in params:
            cnonce = rid()[:8]
            resp = hashlib.md5(f"{ha1}:{params['nonce']}:00000001:{cnonce}:auth:{ha2}".encode()).hexdigest()
            qop = f', qop=auth, nc=00000001, cnonce="{cnonce}"'
        else:
            resp = hashlib.md5(f"{ha1}:{params['nonce']}:{ha2}".encode()).hexdigest()
            qop = ""
        auth = (f'Authorization: Digest username="{args.user}", realm="{params.get("realm", "")}", '
                f'nonce="{params["nonce"]}", uri="{uri}", response="{resp}", algorithm=MD5{qop}\r\n')
    save(args.result, state)
    return 0


def dbcounts(args):
    counts = {}
    for db in sorted(Path(args.dir).glob("**/*")):
        if not db.is_file() or db.suffix in (".db-wal", ".db-shm", ".wal", ".shm"):
            continue
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
            for t in tables:
                counts[f"{db.name}:{t}"] = con.execute(f'select count(*) from "{t}"').fetchone()[0]
            con.close()
        except sqlite3.DatabaseError:
            continue
    print(json.dumps(counts))
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("uas"); a.add_argument("--port", type=int, default=5070); a.add_argument("--result", required=True)
    b = sub.add_parser("uac"); b.add_argument("--target", default="127.0.0.1:5060"); b.add_argument("--port", type=int, default=5080)
    b.add_argument("--number", default="4420001"); b.add_argument("--result", required=True); b.add_argument("--hold", type=float, default=300)
    c = sub.add_parser("register"); c.add_argument("--target", default="127.0.0.1:5060"); c.add_argument("--user", required=True)
    c.add_argument("--password", required=True); c.add_argument("--result", required=True)
    d = sub.add_parser("dbcounts"); d.add_argument("dir")
    args = p.parse_args()
    return {"uas": uas, "uac": uac, "register": register, "dbcounts": dbcounts}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
