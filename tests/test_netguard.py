"""The SSRF guard: which URLs the gateway may connect to."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import httpx
import pytest

from gateway.errors import InvalidRequest, UnresolvableHost, UnsafeURL
from gateway.netguard import AllowList, check_url, is_public, pinned


@pytest.fixture
async def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Answers of the running loop's resolver by host name; unknown names do not resolve."""
    answers: dict[str, list[str]] = {}
    loop = asyncio.get_running_loop()

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (a, port),
            )
            for a in answers[host]
        ]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return answers


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # CGNAT
        "0.0.0.0",
        "224.0.0.251",  # multicast
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "198.18.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.1.2.3",
        "2002:a00:1::",  # 6to4 of 10.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    ],
)
def test_non_public_addresses_are_recognised(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_are_recognised(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_allow_list_reads_hosts_wildcards_and_networks() -> None:
    allow = AllowList.parse(" hooks.internal , *.corp.example, 10.1.0.0/16, 127.0.0.1,::1,, ")

    assert allow.permits_host("HOOKS.internal.")
    assert allow.permits_host("a.b.corp.example")
    assert not allow.permits_host("corp.example")
    assert not allow.permits_host("evilcorp.example")
    assert allow.permits_address(ipaddress.ip_address("10.1.200.3"))
    assert allow.permits_address(ipaddress.ip_address("127.0.0.1"))
    assert allow.permits_address(ipaddress.ip_address("::1"))
    assert not allow.permits_address(ipaddress.ip_address("127.0.0.2"))
    assert AllowList.parse("") == AllowList()


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "host name", "a/b"])
def test_allow_list_refuses_malformed_entries(entry: str) -> None:
    with pytest.raises(ValueError):
        AllowList.parse(entry)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:192.168.0.1]/",
        "http://2130706433/",  # 127.0.0.1 as one number: the resolver reads it so
        "http://0x7f.1/",
        "http://localhost/hook",
    ],
)
async def test_urls_reaching_private_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURL) as caught:
        await check_url(url, "", param="webhook_url")

    assert caught.value.status_code == 400
    assert caught.value.param == "webhook_url"


async def test_a_name_resolving_to_any_private_address_is_refused(
    fake_dns: dict[str, list[str]],
) -> None:
    fake_dns["mixed.example"] = ["93.184.216.34", "10.0.0.7"]
    fake_dns["public.example"] = ["93.184.216.34", "2606:2800:220:1::1"]

    with pytest.raises(UnsafeURL):
        await check_url("https://mixed.example/hook")
    got = await check_url("https://public.example/hook")

    assert got == [
        ipaddress.ip_address("93.184.216.34"),
        ipaddress.ip_address("2606:2800:220:1::1"),
    ]


async def test_the_allow_list_admits_hosts_and_networks(fake_dns: dict[str, list[str]]) -> None:
    fake_dns["hooks.internal"] = ["10.9.9.9"]
    fake_dns["other.internal"] = ["10.9.9.9"]

    assert await check_url("http://hooks.internal/x", "hooks.internal") == [
        ipaddress.ip_address("10.9.9.9")
    ]
    assert await check_url("http://127.0.0.1:9/x", "127.0.0.0/8")
    assert await check_url("http://other.internal/x", "10.9.0.0/16")
    with pytest.raises(UnsafeURL):
        await check_url("http://other.internal/x", "hooks.internal, 10.8.0.0/16")


async def test_unresolvable_hosts_and_bad_urls_are_refused(fake_dns: dict[str, list[str]]) -> None:
    with pytest.raises(UnresolvableHost):
        await check_url("https://nowhere.example/hook", param="webhook_url")
    for bad in ("ftp://example.com/x", "file:///etc/passwd", "not a url", "http:///x"):
        with pytest.raises(InvalidRequest) as caught:
            await check_url(bad, param="webhook_url")
        assert caught.value.param == "webhook_url"


async def test_a_slow_resolver_counts_as_unresolvable(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()

    async def hang(*args: Any, **kwargs: Any) -> list[Any]:
        await asyncio.sleep(10)
        return []

    monkeypatch.setattr(loop, "getaddrinfo", hang)
    with pytest.raises(UnresolvableHost):
        await check_url("https://slow.example/", timeout=0.05)


def test_pinning_keeps_the_name_in_host_and_tls() -> None:
    url = httpx.URL("https://user:pw@hooks.example.com:8443/in?x=1")

    target, headers, extensions = pinned(url, ipaddress.ip_address("2606:2800:220:1::1"))

    assert str(target) == "https://user:pw@[2606:2800:220:1::1]:8443/in?x=1"
    assert headers == {"Host": "hooks.example.com:8443"}
    assert extensions == {"sni_hostname": "hooks.example.com"}
    plain, headers, extensions = pinned(
        httpx.URL("http://hooks.example.com/in"), ipaddress.ip_address("93.184.216.34")
    )
    assert str(plain) == "http://93.184.216.34/in"
    assert headers == {"Host": "hooks.example.com"} and extensions == {}


BAD_HOSTS = [
    "xn--a.com",  # punycode that decodes to a code point IDNA refuses
    "xn--",  # an A-label with nothing after the prefix
    "xn--zz.com",  # not an A-label at all
    "xn--ss-aaa.com",
    "a." + "b" * 64 + ".com",  # a label longer than 63
    ".".join(["c" * 60] * 5),  # a name longer than 253
    "a..example.com",  # an empty label
    ".example.com",
    "\u2488.com",  # "⒈": a Unicode character IDNA refuses
    "a\u200d.com",  # a zero-width joiner
]


@pytest.mark.parametrize("host", BAD_HOSTS)
async def test_an_invalid_domain_name_is_an_invalid_url_naming_the_param(
    fake_dns: dict[str, list[str]], host: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await check_url(f"http://{host}/hook", param="webhook_url")

    assert not isinstance(caught.value, UnresolvableHost)  # the name is wrong, not unknown
    assert caught.value.param == "webhook_url" and caught.value.code == "invalid_url"
    assert "'webhook_url'" in caught.value.message


@pytest.mark.parametrize("host", ["xn--zca.example", "\u00df.example", "a.example.", "x" * 63])
async def test_valid_international_and_long_names_are_resolved(
    fake_dns: dict[str, list[str]], host: str
) -> None:
    fake_dns.update({"xn--zca.example": ["93.184.216.34"], "a.example.": ["93.184.216.34"]})
    fake_dns["x" * 63] = ["93.184.216.34"]

    assert await check_url(f"https://{host}/x") == [ipaddress.ip_address("93.184.216.34")]
