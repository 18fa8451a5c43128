"""Fetching an image from a URL an upstream handed us, without becoming a proxy into our network.

An OpenAI-style relay may answer with ``data[].url`` instead of inline base64.
That URL is chosen by a third party, so it is treated like user input (SSRF):

* only ``https://`` URLs are fetched;
* the host is resolved once, and the fetch is refused if *any* of its addresses
  is not a public unicast one (private, loopback, link-local, multicast,
  reserved, unspecified, shared, or an IPv6 form embedding such an IPv4 address:
  IPv4-mapped, 6to4, Teredo);
* the connection goes to the vetted address itself, with the hostname kept for
  the ``Host`` header, TLS SNI and certificate check (httpcore's
  ``sni_hostname`` request extension), so a second DNS answer cannot swap in
  another address (DNS rebinding);
* redirects are followed by hand, at most :data:`MAX_REDIRECTS`, each target
  vetted again;
* the body is streamed and abandoned past ``max_bytes``, and the whole fetch,
  redirects included, must finish within ``timeout`` seconds (name resolution
  is bounded by the system resolver's own timeout, not by this one).

Each call uses its own connection pool unless a ``client`` is given: a pooled
connection is keyed by address, so sharing one across hostnames could reuse a
TLS session whose certificate was checked for another name. Environment proxy
settings are ignored for the same reason (a proxy would resolve the name itself).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable

import httpx

MAX_REDIRECTS = 3
REDIRECTS = frozenset({301, 302, 303, 307, 308})

Resolver = Callable[[str, int], list[str]]


class FetchError(Exception):
    """The image could not be fetched. ``refused`` when our own rules said no
    (scheme, address, size, redirects), rather than the network or the server."""

    def __init__(self, detail: str, *, refused: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.refused = refused


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (IPv4 and IPv6)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def address_problem(address: str) -> str:
    """Why connecting to ``address`` is not allowed ("" when it is a public unicast one)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        # These forms carry an IPv4 address that the network may route to directly.
        embedded = [ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None]
        for inner in filter(None, embedded):
            if problem := address_problem(str(inner)):
                return f"{ip} embeds {inner}: {problem}"
    # is_global alone is not enough: Python counts multicast (and, before 3.11.10,
    # IPv4-mapped loopback) as global; and fec0::/10 (site-local, deprecated by RFC 3879
    # but still routed inside some networks) counts as global too.
    if (
        not ip.is_global
        or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    ):
        return f"{ip} is not a public address"
    return ""


def vet_url(url: httpx.URL, resolver: Resolver = resolve) -> str:
    """The one address to connect to for ``url``; FetchError(refused) when it may not be fetched."""
    if url.scheme != "https":
        raise FetchError(
            f"refused {url.scheme or 'scheme-less'} URL: only https is fetched", refused=True
        )
    if not url.host:
        raise FetchError("refused URL without a host", refused=True)
    try:
        addresses = resolver(url.host, url.port or 443)
    except (OSError, UnicodeError) as exc:
        raise FetchError(f"could not resolve {url.host}: {exc}") from None
    if not addresses:
        raise FetchError(f"{url.host} resolved to no address")
    for address in addresses:
        if problem := address_problem(address):
            raise FetchError(f"refused {url.host}: {problem}", refused=True)
    return addresses[0]


def fetch_image(
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    client: httpx.Client | None = None,
    resolver: Resolver = resolve,
) -> bytes:
    """The body at ``url``, following up to :data:`MAX_REDIRECTS` vetted redirects.

    Raises :class:`FetchError` for anything but a 200 within the limits.
    ``client`` and ``resolver`` let tests replace the network and DNS.
    """
    deadline = time.monotonic() + timeout
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise FetchError(f"refused malformed URL: {exc}", refused=True) from None
    own_client = client is None
    client = client or httpx.Client(follow_redirects=False, trust_env=False)
    try:
        for _ in range(MAX_REDIRECTS + 1):
            address = vet_url(target, resolver)
            answer = fetch_pinned(client, target, address, max_bytes=max_bytes, deadline=deadline)
            if isinstance(answer, bytes):
                return answer
            target = answer
        raise FetchError(f"refused: more than {MAX_REDIRECTS} redirects", refused=True)
    finally:
        if own_client:
            client.close()


def fetch_pinned(
    client: httpx.Client, url: httpx.URL, address: str, *, max_bytes: int, deadline: float
) -> bytes | httpx.URL:
    """One GET of ``url`` from the already vetted ``address``, verifying TLS for ``url``'s host.

    Returns the body of a 200, or the (not yet vetted) URL a redirect points to.
    """
    pinned = url.copy_with(host=address)
    host_header = url.netloc.decode("ascii")  # the name, with the port if one was given
    try:
        with client.stream(
            "GET",
            pinned,
            headers={"Host": host_header, "Accept": "image/*"},
            extensions={"sni_hostname": url.host},
            timeout=httpx.Timeout(_remaining(deadline)),
            follow_redirects=False,
        ) as response:
            if response.status_code in REDIRECTS:
                if "location" not in response.headers:
                    raise FetchError(f"HTTP {response.status_code} redirect without a Location")
                try:
                    return url.join(response.headers["location"])
                except httpx.InvalidURL as exc:
                    raise FetchError(f"refused malformed redirect: {exc}", refused=True) from None
            if response.status_code != 200:
                raise FetchError(f"HTTP {response.status_code} from {url.host}")
            return _read_limited(response, max_bytes, deadline)
    except httpx.HTTPError as exc:
        raise FetchError(f"fetching from {url.host} failed: {type(exc).__name__}: {exc}") from None


def _read_limited(response: httpx.Response, max_bytes: int, deadline: float) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(f"refused: image of {declared} bytes exceeds {max_bytes}", refused=True)
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise FetchError(f"refused: image larger than {max_bytes} bytes", refused=True)
        _remaining(deadline)
    return bytes(body)


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchError("fetching the image took too long")
    return left
