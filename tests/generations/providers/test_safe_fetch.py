"""Fetching an upstream's image URL without reaching into our own network (SSRF).

DNS is replaced by a dictionary and the network by an httpx MockTransport; one
test runs real TLS on loopback to prove the address pin keeps the certificate
check for the hostname.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from generations.providers.safe_fetch import (
    MAX_REDIRECTS,
    FetchError,
    address_problem,
    fetch_image,
    fetch_pinned,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
DNS = {
    "images.example": ["93.184.215.14"],
    "cdn.example": ["2606:4700::6812:1"],
    "internal.example": ["10.0.0.5"],
    "sneaky.example": ["93.184.215.14", "127.0.0.1"],  # one good address is not enough
}


class FakeDNS:
    def __init__(self, table: dict[str, list[str]] | None = None) -> None:
        self.table = DNS if table is None else table
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return self.table[host]


def serving(*responses: httpx.Response | Exception):
    """A client answering each request with the next response; ``.sent`` keeps the requests."""
    sent: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    client = httpx.Client(transport=httpx.MockTransport(handler))
    client.sent = sent
    return client


def fetch(url: str, client: httpx.Client, dns: FakeDNS | None = None, **kwargs) -> bytes:
    kwargs.setdefault("max_bytes", 1_000_000)
    kwargs.setdefault("timeout", 5.0)
    return fetch_image(url, client=client, resolver=dns or FakeDNS(), **kwargs)


def refused(url: str, client: httpx.Client, dns: FakeDNS | None = None, **kwargs) -> FetchError:
    with pytest.raises(FetchError) as info:
        fetch(url, client, dns, **kwargs)
    return info.value


# --- which addresses may be reached -----------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",  # loopback
        "127.8.9.10",
        "10.0.0.1",  # 10/8
        "10.255.255.255",
        "172.16.0.1",  # 172.16/12
        "172.31.255.254",
        "192.168.1.1",  # 192.168/16
        "169.254.169.254",  # link-local: cloud metadata
        "100.64.0.1",  # shared address space (carrier NAT)
        "0.0.0.0",  # unspecified
        "224.0.0.251",  # multicast: Python calls it global
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",  # link-local
        "fe80::1%eth0",
        "fc00::1",  # unique local
        "fec0::1",  # site-local (deprecated, still routed in some networks): Python calls it global
        "ff02::1",  # multicast
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:169.254.169.254",
        "2002:7f00:1::1",  # 6to4 around 127.0.0.1: Python calls it global
        "2002:a00:1::1",  # 6to4 around 10.0.0.1
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo whose client is 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    ],
)
def test_it_refuses_addresses_that_are_not_public(address):
    assert address_problem(address)


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "8.8.8.8", "2606:4700::6812:1", "2002:5db8:d70e::1"]
)
def test_it_allows_public_addresses(address):
    assert address_problem(address) == ""


def test_it_reports_what_is_wrong_with_an_embedded_address():
    assert address_problem("::ffff:10.0.0.1") == (
        "::ffff:a00:1 embeds 10.0.0.1: 10.0.0.1 is not a public address"
    )


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "10.1.2.3", "172.16.5.4", "192.168.0.10", "169.254.169.254", "[::1]",
     "[fe80::1]", "[::ffff:127.0.0.1]", "0.0.0.0"],
)  # fmt: skip
def test_it_refuses_a_url_naming_a_private_address(host):
    client = serving()
    dns = FakeDNS({host.strip("[]"): [host.strip("[]")]})
    err = refused(f"https://{host}/image.png", client, dns)
    assert err.refused and "not a public address" in err.detail
    assert client.sent == []


def test_it_refuses_a_host_whose_name_resolves_to_a_private_address():
    client = serving()
    err = refused("https://internal.example/cat.png", client)
    assert err.refused
    assert err.detail == "refused internal.example: 10.0.0.5 is not a public address"
    assert client.sent == []


def test_it_refuses_a_host_when_any_of_its_addresses_is_private():
    client = serving()
    err = refused("https://sneaky.example/cat.png", client)
    assert err.refused and "127.0.0.1" in err.detail
    assert client.sent == []


@pytest.mark.parametrize(
    "url", ["http://images.example/cat.png", "ftp://images.example/cat.png", "//images.example/x"]
)
def test_it_fetches_only_https(url):
    client, dns = serving(), FakeDNS()
    err = refused(url, client, dns)
    assert err.refused and "only https" in err.detail
    assert dns.asked == [] and client.sent == []


def test_it_reports_a_name_that_does_not_resolve_as_a_failure_not_a_refusal():
    err = refused("https://nowhere.example/cat.png", serving())
    assert not err.refused and "could not resolve nowhere.example" in err.detail


# --- the pinned request -----------------------------------------------------------------


def test_it_connects_to_the_vetted_address_and_keeps_the_hostname_for_tls():
    client = serving(httpx.Response(200, content=PNG))
    assert fetch("https://images.example/a/cat.png?sig=abc", client) == PNG
    (sent,) = client.sent
    assert str(sent.url) == "https://93.184.215.14/a/cat.png?sig=abc"
    assert sent.headers["host"] == "images.example"
    assert sent.extensions["sni_hostname"] == "images.example"


def test_it_pins_an_ipv6_address_and_keeps_a_port():
    client = serving(httpx.Response(200, content=PNG))
    assert fetch("https://cdn.example:8443/cat.png", client) == PNG
    (sent,) = client.sent
    assert str(sent.url) == "https://[2606:4700::6812:1]:8443/cat.png"
    assert sent.headers["host"] == "cdn.example:8443"
    assert sent.extensions["sni_hostname"] == "cdn.example"


def test_it_follows_a_redirect_and_vets_its_target_again():
    client = serving(
        httpx.Response(302, headers={"location": "https://cdn.example/final.png"}),
        httpx.Response(200, content=PNG),
    )
    dns = FakeDNS()
    assert fetch("https://images.example/cat.png", client, dns) == PNG
    assert dns.asked == ["images.example", "cdn.example"]
    assert [r.headers["host"] for r in client.sent] == ["images.example", "cdn.example"]
    assert client.sent[1].url.host == "2606:4700::6812:1"


def test_it_resolves_a_relative_redirect_against_the_hostname_not_the_address():
    client = serving(
        httpx.Response(301, headers={"location": "/moved/cat.png"}),
        httpx.Response(200, content=PNG),
    )
    assert fetch("https://images.example/cat.png", client) == PNG
    assert client.sent[1].headers["host"] == "images.example"
    assert client.sent[1].url.path == "/moved/cat.png"


@pytest.mark.parametrize(
    "location",
    [
        "https://internal.example/cat.png",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::ffff:127.0.0.1]/cat.png",
        "http://images.example/cat.png",
    ],
)
def test_it_refuses_a_redirect_to_a_private_address_or_plain_http(location):
    client = serving(httpx.Response(307, headers={"location": location}))
    dns = FakeDNS({**DNS, "169.254.169.254": ["169.254.169.254"], "::ffff:127.0.0.1": [
        "::ffff:127.0.0.1"]})  # fmt: skip
    err = refused("https://images.example/cat.png", client, dns)
    assert err.refused
    assert len(client.sent) == 1  # the private target was never asked


def test_it_gives_up_after_three_redirects():
    hops = [httpx.Response(302, headers={"location": "/again"}) for _ in range(MAX_REDIRECTS + 1)]
    client = serving(*hops)
    err = refused("https://images.example/cat.png", client)
    assert err.refused and "more than 3 redirects" in err.detail
    assert len(client.sent) == MAX_REDIRECTS + 1


def test_it_refuses_an_image_declared_larger_than_the_limit_without_reading_it():
    body = iter([b"x" * 10])  # never read: the header alone decides
    client = serving(httpx.Response(200, headers={"content-length": "5000"}, content=body))
    err = refused("https://images.example/big.png", client, max_bytes=4000)
    assert err.refused and "5000 bytes exceeds 4000" in err.detail


def test_it_stops_reading_an_undeclared_body_past_the_limit():
    read = []

    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            read.append(1)
            yield b"x" * 1000

    client = serving(httpx.Response(200, content=chunks()))
    err = refused("https://images.example/endless.png", client, max_bytes=4500)
    assert err.refused and "larger than 4500 bytes" in err.detail
    assert len(read) == 5


def test_it_stops_when_the_whole_fetch_takes_too_long():
    def slow() -> Iterator[bytes]:
        for _ in range(50):
            time.sleep(0.02)
            yield b"x"

    client = serving(httpx.Response(200, content=slow()))
    started = time.monotonic()
    err = refused("https://images.example/slow.png", client, timeout=0.1)
    assert not err.refused and "took too long" in err.detail
    assert time.monotonic() - started < 0.9  # the body alone would take a second


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (httpx.Response(404), "HTTP 404 from images.example"),
        (httpx.Response(302), "HTTP 302 redirect without a Location"),
        (httpx.ConnectError("connection refused"), "ConnectError: connection refused"),
        (httpx.ReadTimeout("timed out"), "ReadTimeout: timed out"),
    ],
)
def test_it_reports_server_and_network_trouble_as_a_failure_not_a_refusal(answer, says):
    err = refused("https://images.example/cat.png", serving(answer))
    assert not err.refused and says in err.detail


# --- real TLS on loopback: the pin keeps the certificate check ---------------------------


def _certificate_files(tmp_path, hostname: str) -> tuple[str, str, str]:
    """A throwaway CA and a certificate for ``hostname`` it signed: (cert, key, ca) paths."""
    now = datetime.now(UTC)

    def build(subject: str, issuer: str, public_key, signer, *, ca: bool, san: str | None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key, leaf_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = build("test CA", "test CA", ca_key.public_key(), ca_key, ca=True, san=None)
    leaf = build(hostname, "test CA", leaf_key.public_key(), ca_key, ca=False, san=hostname)
    paths = tmp_path / "leaf.pem", tmp_path / "leaf.key", tmp_path / "ca.pem"
    paths[0].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths[2].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return tuple(str(p) for p in paths)


@contextmanager
def tls_server(cert: str, key: str) -> Iterator[tuple[int, list[str], list[str]]]:
    """An HTTPS server on loopback; yields its port, the SNI names and Host headers it saw."""
    names: list[str] = []
    hosts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hosts.append(self.headers["Host"])
            self.send_response(200)
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            self.wfile.write(PNG)

        def log_message(self, *args) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: names.append(name)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], names, hosts
    finally:
        server.shutdown()
        server.server_close()


def test_it_verifies_the_certificate_for_the_hostname_while_connecting_to_the_address(tmp_path):
    cert, key, ca = _certificate_files(tmp_path, "images.example")
    client = httpx.Client(verify=ssl.create_default_context(cafile=ca))
    with tls_server(cert, key) as (port, names, hosts):
        url = httpx.URL(f"https://images.example:{port}/cat.png")
        body = fetch_pinned(client, url, "127.0.0.1", max_bytes=1000, deadline=time.monotonic() + 5)
    assert body == PNG
    assert names == ["images.example"]
    assert hosts == [f"images.example:{port}"]


def test_it_refuses_a_certificate_made_out_to_another_name(tmp_path):
    cert, key, ca = _certificate_files(tmp_path, "other.example")
    client = httpx.Client(verify=ssl.create_default_context(cafile=ca))
    with tls_server(cert, key) as (port, names, _), pytest.raises(FetchError) as info:
        url = httpx.URL(f"https://images.example:{port}/cat.png")
        fetch_pinned(client, url, "127.0.0.1", max_bytes=1000, deadline=time.monotonic() + 5)
    assert "CERTIFICATE_VERIFY_FAILED" in info.value.detail
    assert names == ["images.example"]
