"""A small SIP peer over TCP or TLS for the tests: a gateway that answers, a caller that calls.

SIPp (Debian's sip-tester) speaks TCP but not TLS, so the TLS tests use this instead. It runs
an asyncio loop in a thread of its own; messages are framed with sipedge's own stream parser
and parsed with `parse_message`. Certificates: `make_ca` / `issue` (cryptography), PEM files.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sipedge.sip.digest import answer_challenge, pick_challenge
from sipedge.sip.message import Request, Response, parse_message
from sipedge.sip.transport.framing import PING, StreamParser

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)

# -- certificates ----------------------------------------------------------------------------


@dataclass
class Issued:
    cert: Path
    key: Path
    der: bytes

    @property
    def fingerprint(self) -> str:
        digest = hashes.Hash(hashes.SHA256())
        digest.update(self.der)
        return "sha256:" + digest.finalize().hex()


@dataclass
class Ca:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    path: Path


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_ca(directory: Path, name: str) -> Ca:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}-ca.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Ca(cert, key, path)


def issue(
    directory: Path, name: str, ca: Ca | None, names: tuple[str, ...] = ("127.0.0.1",)
) -> Issued:
    """A leaf certificate for `names` (IPs and DNS names), signed by `ca` (None: itself)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject if ca else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    cert = builder.sign(ca.key if ca else key, hashes.SHA256())
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return Issued(cert_path, key_path, cert.public_bytes(serialization.Encoding.DER))


def server_tls(issued: Issued, client_ca: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(issued.cert, issued.key)
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_tls(ca: Path | None, client: Issued | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    if ca is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    return context


# -- the peer --------------------------------------------------------------------------------


def _response(request: Request, status: int, reason: str, tag: str, contact: str) -> bytes:
    lines = [f"SIP/2.0 {status} {reason}"]
    for name in ("Via", "From", "To", "Call-ID", "CSeq", "Record-Route"):
        for value in request.headers.get_all(name):
            if name == "To" and ";tag=" not in value and status > 100:
                value += f";tag={tag}"
            lines.append(f"{name}: {value}")
    body = b""
    if status == 200 and request.method == "INVITE":
        lines.append(f"Contact: {contact}")
        lines.append("Content-Type: application/sdp")
        body = SDP
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _messages(
    reader: asyncio.StreamReader, parser: StreamParser, timeout: float
) -> AsyncIterator[Request | Response]:
    """The messages arriving on `reader` until it closes (each read within `timeout`)."""
    while data := await asyncio.wait_for(reader.read(65536), timeout):
        for event in parser.feed(data):
            if isinstance(event, bytes):
                yield parse_message(event)


@dataclass
class Peer:
    """A TCP/TLS SIP peer on its own loop thread. `received` holds every message it got."""

    transport: str = "tls"  # the Via / Contact word: tls or tcp
    close_on_invite: bool = False  # as a gateway: 100 Trying, then close the connection
    received: list[Request | Response] = field(default_factory=list)
    handshakes_failed: int = 0
    connections: int = 0  # accepted as a gateway
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _thread: threading.Thread | None = None
    _server: asyncio.AbstractServer | None = None
    _flows: set[asyncio.Task[None]] = field(default_factory=set)  # registered connections
    port: int = 0

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- as a gateway: answer every INVITE with 100, 200 (SDP); 200 to BYE -----------------
    def serve(self, port: int, context: ssl.SSLContext | None) -> None:
        self.port = port

        async def start() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", port, ssl=context)

        self.run(start())

    def drop(self) -> None:
        """Close every connection accepted so far (the peer goes away between calls)."""

        async def close() -> None:
            for writer in list(self._writers):
                writer.close()

        self.run(close())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        parser = StreamParser(65536)
        contact = f"<sip:gw@127.0.0.1:{self.port};transport={self.transport}>"
        try:
            while data := await reader.read(65536):
                for event in parser.feed(data):
                    if event is PING:
                        writer.write(b"\r\n")
                        continue
                    assert isinstance(event, bytes)
                    msg = parse_message(event)
                    self.received.append(msg)
                    if isinstance(msg, Request) and msg.method != "ACK":
                        if msg.method == "INVITE":
                            writer.write(_response(msg, 100, "Trying", "gw1", contact))
                            if self.close_on_invite:
                                await writer.drain()
                                return
                        writer.write(_response(msg, 200, "OK", "gw1", contact))
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            self.handshakes_failed += 1
        finally:
            self._writers.discard(writer)
            writer.close()

    # -- as an endpoint: REGISTER over a connection, then answer what comes over it ---------
    def register(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext | None,
        user: str,
        password: str,
        expires: int = 600,
    ) -> Response:
        """Register `user` (digest) over a new connection and keep it open: INVITEs and BYEs
        that come over it are answered as a gateway answers them (`received` holds them)."""
        return self.run(self._register(host, port, context, user, password, expires), 30)

    async def _register(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext | None,
        user: str,
        password: str,
        expires: int,
    ) -> Response:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=None if context is None else host
        )
        self.port = writer.get_extra_info("sockname")[1]
        uri = f"sip:{host}:{port}"
        parser = StreamParser(65536)
        call_id = f"reg-{time.monotonic_ns()}"

        def request(cseq: int, auth: str = "") -> bytes:
            head = [
                f"REGISTER {uri} SIP/2.0",
                f"Via: SIP/2.0/{self.transport.upper()} 127.0.0.1:{self.port};"
                f"branch=z9hG4bKreg{cseq}{call_id[-6:]};rport",
                "Max-Forwards: 70",
                f"From: <sip:{user}@{host}>;tag=reg1",
                f"To: <sip:{user}@{host}>",
                f"Call-ID: {call_id}",
                f"CSeq: {cseq} REGISTER",
                f"Contact: <sip:{user}@127.0.0.1:{self.port};transport={self.transport}>",
                f"Expires: {expires}",
            ]
            if auth:
                head.append(f"Authorization: {auth}")
            head.append("Content-Length: 0")
            return ("\r\n".join(head) + "\r\n\r\n").encode()

        async def response() -> Response:
            async for msg in _messages(reader, parser, 10):
                if isinstance(msg, Response) and msg.status >= 200:
                    return msg
            raise ConnectionError("closed")

        writer.write(request(1))
        answer = await response()
        if answer.status == 401:
            challenge = pick_challenge(answer.headers.get_all("WWW-Authenticate"))
            assert challenge is not None
            auth = answer_challenge(
                challenge, user=user, password=password, method="REGISTER", uri=uri
            )
            writer.write(request(2, auth))
            answer = await response()
        if answer.status == 200:
            self._flows.add(asyncio.create_task(self._handle(reader, writer)))
        else:
            writer.close()
        return answer

    # -- as a caller: INVITE, ACK, hold, BYE ------------------------------------------------
    def call(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext | None,
        number: str = "4420001",
        hold: float = 0.3,
    ) -> list[Response]:
        return list(self.run(self._call(host, port, context, number, hold), 40))

    async def _call(
        self, host: str, port: int, context: ssl.SSLContext | None, number: str, hold: float
    ) -> list[Response]:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=None if context is None else host
        )
        local = writer.get_extra_info("sockname")
        via = f"SIP/2.0/{self.transport.upper()} 127.0.0.1:{local[1]}"
        scheme_contact = f"<sip:caller@127.0.0.1:{local[1]};transport={self.transport}>"
        parser = StreamParser(65536)
        responses: list[Response] = []
        call_id = f"peer-{time.monotonic_ns()}"

        def request(method: str, cseq: int, to_tag: str = "", body: bytes = b"") -> bytes:
            to = f"<sip:{number}@{host}>" + (f";tag={to_tag}" if to_tag else "")
            head = [
                f"{method} sip:{number}@{host}:{port};transport={self.transport} SIP/2.0",
                f"Via: {via};branch=z9hG4bK{method.lower()}{cseq}{call_id[-6:]};rport",
                "Max-Forwards: 70",
                "From: <sip:caller@127.0.0.1>;tag=caller1",
                f"To: {to}",
                f"Call-ID: {call_id}",
                f"CSeq: {cseq} {method}",
                f"Contact: {scheme_contact}",
            ]
            if body:
                head.append("Content-Type: application/sdp")
            head.append(f"Content-Length: {len(body)}")
            return ("\r\n".join(head) + "\r\n\r\n").encode() + body

        async def final(method: str) -> Response:
            async for msg in _messages(reader, parser, 20):
                self.received.append(msg)
                if isinstance(msg, Response):
                    responses.append(msg)
                    if msg.status >= 200 and msg.cseq[1] == method:
                        return msg
                elif msg.method != "ACK":  # answer what sipd asks (BYE, ...)
                    writer.write(_response(msg, 200, "OK", "caller1", scheme_contact))
            raise ConnectionError("closed")

        writer.write(request("INVITE", 1, body=SDP))
        ok = await final("INVITE")
        if ok.status == 200:
            tag = ok.to_tag or ""
            writer.write(request("ACK", 1, tag))
            await asyncio.sleep(hold)
            writer.write(request("BYE", 2, tag))
            await final("BYE")
        writer.close()
        return responses
