"""The address guard of people's own calendars: classification on plain values, and real connections.

Public hosts cannot be reached from here, so the fetcher's resolver (a real parameter of AddressGuard,
socket.getaddrinfo by default) maps test names to loopback addresses, and `allowed_networks` lets one of
them, 127.0.0.2, stand for a public calendar server. Everything else is real: HTTP servers on 127.0.0.1
and 127.0.0.2, the fetcher's own client, its redirects.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connectors.address_guard import AddressGuard, address_problem, refusal
from connectors.base import ConnectorError
from connectors.fetch import Fetcher

CALENDAR = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nEND:VCALENDAR\r\n"
STAND_IN = ipaddress.ip_network("127.0.0.2/32")  # "public" for these tests only


# -- classification, on plain values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:0.0.0.0", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("fc00::1", "private"),
        ("169.254.169.254", "link-local"),
        ("::ffff:169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("100.64.0.1", "not a public address"),
        ("2002:7f00:1::", "loopback"),  # 6to4 wrapping 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 wrapping 169.254.169.254
    ],
)
def test_non_public_addresses_are_refused_with_their_kind(address: str, why: str) -> None:
    reason = refusal(address)
    assert reason is not None and why in reason


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal(address) is None


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("file:///etc/passwd", "is a file"),
        ("/etc/passwd", "is a file"),
        ("~/calendar.ics", "is a file"),
        ("calendar.ics", "is a file"),
        ("C:\\calendars\\work.ics", "is a file"),
        ("ftp://example.com/cal.ics", "scheme 'ftp'"),
        ("gopher://example.com/", "scheme 'gopher'"),
        ("https:///no-host", "no usable host"),
        ("http://[::1", "not a valid address"),
    ],
)
def test_only_addresses_can_be_a_persons_calendar(location: str, why: str) -> None:
    problem = address_problem(location)
    assert problem is not None and why in problem


@pytest.mark.parametrize(
    "location", ["https://calendar.example.com/ical/secret/basic.ics", "webcal://example.com/c", "http://h/x"]
)
def test_addresses_are_fine(location: str) -> None:
    assert address_problem(location) is None


# -- real connections -------------------------------------------------------------------------------------


@dataclass
class Served:
    host: str
    port: int
    paths: list[str] = field(default_factory=list)  # every request this server received

    def url(self, path: str = "/cal.ics", host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.served.paths.append(self.path)
        target = self.server.redirects.get(self.path)
        if target is not None:
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/calendar")
        self.send_header("Content-Length", str(len(CALENDAR)))
        self.end_headers()
        self.wfile.write(CALENDAR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int) -> None:
        super().__init__((host, port), _Handler)
        self.served = Served(host, self.server_address[1])
        self.redirects: dict[str, str] = {}


@pytest.fixture
def start() -> Iterator[Callable[..., _Server]]:
    servers: list[_Server] = []

    def run(host: str, port: int = 0) -> _Server:
        server = _Server(host, port)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield run
    for server in servers:
        server.shutdown()
        server.server_close()


class Names:
    """A resolver in getaddrinfo's shape: test names to addresses, anything else unknown. `answers` may
    change between calls (a rebinding name); `asked` counts the look-ups."""

    def __init__(self, answers: dict[str, Callable[[], Sequence[str]]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, host: str, port: int, *_args: Any, **_kwargs: Any) -> list[tuple[Any, ...]]:
        self.asked.append(host)
        if host not in self.answers:
            try:
                ipaddress.ip_address(host)
            except ValueError:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
            addresses: Sequence[str] = [host]
        else:
            addresses = self.answers[host]()
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]


def fetcher(tmp_path: Path, guard: AddressGuard | None) -> Fetcher:
    return Fetcher(tmp_path / "cache", timeout=5, guard=guard)


def refused(fetch: Fetcher, location: str) -> ConnectorError:
    with pytest.raises(ConnectorError) as caught:
        fetch.fetch("own", location)
    return caught.value


def test_a_loopback_server_is_refused_unless_allowed(tmp_path: Path, start: Callable[..., _Server]) -> None:
    server = start("127.0.0.1")
    error = refused(fetcher(tmp_path, AddressGuard()), server.served.url())
    assert "refused" in error.reason and "loopback" in error.reason and not error.retryable
    assert "/cal.ics" not in error.reason  # the path may be a secret
    assert server.served.paths == []  # not even connected to: nothing was asked
    allowed = fetcher(tmp_path, AddressGuard(allow_private=True)).fetch("own", server.served.url())
    assert allowed.data == CALENDAR and server.served.paths == ["/cal.ics"]
    # The personal mode (no guard) reads it as before.
    assert fetcher(tmp_path / "p", None).fetch("own", server.served.url()).data == CALENDAR


def test_a_name_is_judged_by_the_addresses_it_resolves_to(
    tmp_path: Path, start: Callable[..., _Server]
) -> None:
    server = start("127.0.0.1")
    names = Names({"calendar.example.com": lambda: ["127.0.0.1"]})
    error = refused(
        fetcher(tmp_path, AddressGuard(getaddrinfo=names)), server.served.url(host="calendar.example.com")
    )
    assert "calendar.example.com is at 127.0.0.1" in error.reason
    assert server.served.paths == []


def test_one_inside_address_among_many_refuses_the_name(
    tmp_path: Path, start: Callable[..., _Server]
) -> None:
    outside = start("127.0.0.2")
    names = Names({"mixed.example": lambda: ["127.0.0.2", "127.0.0.1"]})
    guard = AddressGuard(allowed_networks=(STAND_IN,), getaddrinfo=names)
    error = refused(fetcher(tmp_path, guard), outside.served.url(host="mixed.example"))
    assert "127.0.0.1" in error.reason and outside.served.paths == []


def test_a_redirect_to_loopback_is_refused(tmp_path: Path, start: Callable[..., _Server]) -> None:
    outside = start("127.0.0.2")
    inside = start("127.0.0.1")
    names = Names(
        {
            "public.example": lambda: ["127.0.0.2"],
            "inside.example": lambda: ["127.0.0.1"],
            "localhost": lambda: [str(a[4][0]) for a in socket.getaddrinfo("localhost", 80)],
        }
    )
    guard = AddressGuard(allowed_networks=(STAND_IN,), getaddrinfo=names)
    fetch = fetcher(tmp_path, guard)
    # Followed where the guard allows (the check does not simply refuse redirects)...
    outside.redirects["/moved"] = outside.served.url(host="public.example")
    assert fetch.fetch("own", outside.served.url("/moved", host="public.example")).data == CALENDAR
    # ...and refused, hop by hop, where it does not: by name, by literal address, by mapped address.
    for target in (
        inside.served.url(host="inside.example"),
        inside.served.url(),
        f"http://[::ffff:127.0.0.1]:{inside.served.port}/cal.ics",
        f"http://localhost:{inside.served.port}/cal.ics",
    ):
        outside.redirects["/away"] = target
        error = refused(fetch, outside.served.url("/away", host="public.example"))
        assert "refused" in error.reason, target
    assert inside.served.paths == []
    assert outside.served.paths.count("/away") == 4
    # A redirect out of HTTP altogether is not followed either.
    outside.redirects["/file"] = "file:///etc/passwd"
    assert "root:" not in refused(fetch, outside.served.url("/file", host="public.example")).reason


def test_the_connection_goes_to_the_address_that_was_checked(
    tmp_path: Path, start: Callable[..., _Server]
) -> None:
    """DNS rebinding: the name answers a public address to the check and loopback to any later look-up.
    The fetcher resolves once and connects to the checked address, so loopback is never reached."""
    outside = start("127.0.0.2")
    inside = start("127.0.0.1", outside.served.port)
    answers = iter([["127.0.0.2"]])
    names = Names({"rebind.example": lambda: next(answers, ["127.0.0.1"])})
    guard = AddressGuard(allowed_networks=(STAND_IN,), getaddrinfo=names)
    result = fetcher(tmp_path, guard).fetch("own", outside.served.url(host="rebind.example"))
    assert result.data == CALENDAR
    assert outside.served.paths == ["/cal.ics"] and inside.served.paths == []
    assert names.asked == ["rebind.example"]


def test_files_are_refused_at_read_time_with_a_guard(tmp_path: Path) -> None:
    calendar = tmp_path / "cal.ics"
    calendar.write_bytes(CALENDAR)
    guarded = fetcher(tmp_path, AddressGuard(allow_private=True))
    for location in (str(calendar), calendar.as_uri()):
        error = refused(guarded, location)
        assert "not files" in error.reason and not error.retryable
    assert fetcher(tmp_path / "p", None).fetch("own", str(calendar)).data == CALENDAR


def test_an_unknown_name_is_a_dns_failure(tmp_path: Path) -> None:
    error = refused(fetcher(tmp_path, AddressGuard(getaddrinfo=Names({}))), "https://nowhere.example/c.ics")
    assert "cannot resolve host nowhere.example" in error.reason


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate it signed for calendar.example: (ca.pem, cert.pem, key.pem)."""

    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "circleback test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "calendar.example")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("calendar.example")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


def test_https_is_verified_against_the_name_though_the_connection_is_made_to_the_address(
    tmp_path: Path, start: Callable[..., _Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, cert, key = _certificates(tmp_path)
    server = start("127.0.0.2")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # the client trusts the test CA (httpx reads it)
    names = Names({"calendar.example": lambda: ["127.0.0.2"], "other.example": lambda: ["127.0.0.2"]})
    guard = AddressGuard(allowed_networks=(STAND_IN,), getaddrinfo=names)
    port = server.served.port
    result = fetcher(tmp_path, guard).fetch("own", f"https://calendar.example:{port}/cal.ics")
    assert result.data == CALENDAR
    # The same address under a name the certificate does not carry: refused by TLS, not waved through.
    error = refused(fetcher(tmp_path / "other", guard), f"https://other.example:{port}/cal.ics")
    assert "certificate" in error.reason.lower() or "hostname" in error.reason.lower(), error.reason
    assert server.served.paths == ["/cal.ics"]
