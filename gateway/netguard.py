"""The SSRF guard: which addresses the gateway may reach when it fetches a URL it was given.

``check_url(url, allow)`` parses the URL the way httpx will, resolves its host (or takes an
IP literal as it is) and returns the addresses, or raises ``UnsafeURL`` when any address is
not a public unicast address: loopback, private (RFC 1918, ULA), link-local (cloud metadata
at 169.254.169.254 included), shared/CGNAT space, multicast, reserved, unspecified, and IPv6
forms that embed such an IPv4 address (mapped, 6to4, Teredo, NAT64). An operator opens holes
with an allow-list: host names (``hooks.internal``, ``*.corp.example``) and networks
(``10.1.0.0/16``, ``127.0.0.1``).

Checking is not enough on its own: DNS may answer differently when the client resolves the
name again (rebinding). A caller should connect to one of the returned addresses (``pinned``
builds the request URL and headers for that), not to the name.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any

import httpx

from gateway.errors import InvalidRequest, UnresolvableHost, UnsafeURL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SCHEMES = frozenset({"http", "https"})
RESOLVE_TIMEOUT = 5.0

#: not covered (or not in every Python) by ``ipaddress``'s ``is_global``
_BLOCKED: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "100.64.0.0/10",  # shared address space (CGNAT)
        "192.0.0.0/24",  # IETF protocol assignments
        "192.88.99.0/24",  # 6to4 relay anycast
        "198.18.0.0/15",  # benchmarking
        "64:ff9b:1::/48",  # local-use NAT64
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class AllowList:
    """Hosts and networks exempt from the guard (``BACKSERV_WEBHOOK_ALLOW`` and the like)."""

    hosts: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()  # from "*.example.com": ".example.com"
    networks: tuple[IPNetwork, ...] = field(default=())

    @classmethod
    def parse(cls, raw: str) -> AllowList:
        """``"hooks.internal, *.corp.example, 10.0.0.0/8, ::1"``; ``ValueError`` if malformed."""
        hosts: set[str] = set()
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        for item in (part.strip().lower() for part in raw.split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
                continue
            except ValueError:
                pass
            if "/" in item or ":" in item or " " in item:
                raise ValueError(f"not a host name or a network: {item!r}")
            if item.startswith("*."):
                suffixes.append(item[1:].rstrip("."))
            else:
                hosts.add(item.rstrip("."))
        return cls(frozenset(hosts), tuple(suffixes), tuple(networks))

    def permits_host(self, host: str) -> bool:
        name = host.lower().rstrip(".")
        return name in self.hosts or any(name.endswith(s) for s in self.suffixes)

    def permits_address(self, ip: IPAddress) -> bool:
        return any(ip.version == n.version and ip in n for n in self.networks)


def is_public(ip: IPAddress) -> bool:
    """True for a global unicast address; False for anything local, private or special."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public(ip.ipv4_mapped)
        if ip in _NAT64:  # DNS64 answers of an IPv6-only network: judge the IPv4 inside
            return is_public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        embedded = [ip.sixtofour] if ip.sixtofour is not None else []
        if ip.teredo is not None:
            embedded.extend(ip.teredo)
        if any(not is_public(e) for e in embedded):
            return False
        if ip.is_site_local:
            return False
    special = (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )
    return ip.is_global and not special and not any(ip in n for n in _BLOCKED)


def parse_url(url: str, *, param: str = "url") -> httpx.URL:
    """The URL as httpx reads it (so the host checked is the host connected to)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise InvalidRequest(
            f"Invalid '{param}': not a valid URL.", param=param, code="invalid_url"
        ) from None
    if parsed.scheme not in SCHEMES:
        raise InvalidRequest(
            f"Invalid '{param}': the scheme must be http or https.",
            param=param,
            code="invalid_url",
        )
    if not parsed.raw_host:
        raise InvalidRequest(
            f"Invalid '{param}': the URL has no host.", param=param, code="invalid_url"
        )
    if not _valid_host(parsed):
        raise InvalidRequest(
            f"Invalid '{param}': the host is not a valid domain name (labels of 1 to 63 "
            f"characters, valid IDNA, at most 253 characters in all).",
            param=param,
            code="invalid_url",
        )
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise InvalidRequest(
            f"Invalid '{param}': the port must be between 1 and 65535.",
            param=param,
            code="invalid_url",
        )
    return parsed


def _valid_host(parsed: httpx.URL) -> bool:
    """Whether the host is an IP literal or a domain name DNS can carry, its ``xn--`` labels
    valid IDNA: httpx decodes those only when ``.host`` is read, and raises ``idna``'s own
    errors (``UnicodeError``) then, so they are read here, once, where a refusal is a 4xx."""
    raw = parsed.raw_host.decode("ascii")
    if ":" in raw:  # an IPv6 literal, checked by httpx already
        return True
    try:
        _ = parsed.host  # reading it decodes the "xn--" labels
    except ValueError:  # idna.IDNAError is a UnicodeError
        return False
    labels = raw[:-1].split(".") if raw.endswith(".") else raw.split(".")
    return len(raw) <= 253 and all(0 < len(label) <= 63 for label in labels)


async def resolve(host: str, port: int, *, param: str, timeout: float) -> list[IPAddress]:
    """The addresses of ``host`` (an IP literal is its own answer), in resolver order."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, TimeoutError):
        infos = []
    found: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise UnresolvableHost(
            f"Invalid '{param}': the host '{host}' does not resolve.", param=param
        )
    return found


async def check_url(
    url: str | httpx.URL,
    allow: AllowList | str = "",
    *,
    param: str = "url",
    timeout: float = RESOLVE_TIMEOUT,
) -> list[IPAddress]:
    """The addresses ``url``'s host resolves to, once every one of them is allowed.

    Raises ``InvalidRequest`` for a malformed or non-http(s) URL, ``UnresolvableHost`` when
    the name does not resolve, and ``UnsafeURL`` when an address is not public and neither
    the host nor that address is in ``allow``.
    """
    parsed = url if isinstance(url, httpx.URL) else parse_url(url, param=param)
    allowed = allow if isinstance(allow, AllowList) else AllowList.parse(allow)
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = await resolve(host, port, param=param, timeout=timeout)
    if allowed.permits_host(host):
        return addresses
    for address in addresses:
        if not is_public(address) and not allowed.permits_address(address):
            raise UnsafeURL(
                f"Invalid '{param}': the host '{parsed.host}' is or resolves to {address}, a "
                f"loopback, private, link-local or otherwise non-public address, which the "
                f"gateway does not connect to.",
                param=param,
            )
    return addresses


def pinned(url: httpx.URL, address: IPAddress) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """The URL, headers and request extensions that reach ``url`` at ``address`` exactly.

    The name stays in the ``Host`` header and in TLS (SNI and certificate checks), so a
    virtual host and an https certificate see the request they expect.
    """
    host = url.raw_host.decode("ascii")
    headers = {"Host": url.netloc.decode("ascii")}
    extensions: dict[str, Any] = {}
    if url.scheme == "https":
        extensions["sni_hostname"] = host
    return url.copy_with(host=str(address)), headers, extensions
