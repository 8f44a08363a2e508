"""The SSRF guard: which addresses and URLs Starling refuses to fetch, and why."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from bot.errors import UserError
from bot.netguard import (
    BlockedAddressError,
    GuardedResolver,
    address_allowed,
    check_host,
    check_url_syntax,
    is_public_address,
)

PUBLIC = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "172.15.255.255",  # just below 172.16/12
    "172.32.0.0",  # just above
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",  # IPv4-mapped public
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
]

NOT_PUBLIC = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "100.64.0.1",  # CGNAT
    "100.127.255.255",
    "169.254.169.254",  # cloud metadata
    "169.254.1.1",
    "0.0.0.0",
    "0.1.2.3",
    "255.255.255.255",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "192.0.2.1",
    "198.18.0.1",
    "::",
    "::1",
    "fe80::1",
    "fe80::1%eth0",
    "fc00::1",
    "fd00:ec2::254",  # AWS metadata over IPv6
    "ff02::1",
    "fec0::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::127.0.0.1",  # deprecated IPv4-compatible
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b:1::1",  # local-use NAT64
    "2001::1",  # Teredo
    "2001:db8::1",
    "100::1",
]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_fetchable(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_inward_addresses_are_not_public(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "::1", "fd12::1", "100.64.0.9"])
def test_allow_private_lets_local_addresses_through(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert not address_allowed(ip, allow_private=False)
    assert address_allowed(ip, allow_private=True)


@pytest.mark.parametrize(
    "address", ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254", "169.254.170.2"]
)
def test_cloud_metadata_is_never_fetched_even_when_private_is_allowed(address: str) -> None:
    assert not address_allowed(ipaddress.ip_address(address), allow_private=True)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/feed.xml", "https://example.com/feed.xml"),
        ("  HTTP://Example.COM:80/a?b=1#frag ", "http://example.com/a?b=1"),
        ("https://example.com:8443/x", "https://example.com:8443/x"),
        ("http://bücher.example/rss", "http://xn--bcher-kva.example/rss"),
        ("http://[2606:4700::1111]/", "http://[2606:4700::1111]/"),
    ],
)
def test_check_url_syntax_normalises(url: str, expected: str) -> None:
    assert check_url_syntax(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/feed", "only http:// and https:// URLs can be followed"),
        ("file:///etc/passwd", "only http:// and https:// URLs can be followed"),
        ("javascript:alert(1)", "only http:// and https:// URLs can be followed"),
        ("example.com/feed", "only http:// and https:// URLs can be followed"),
        ("http:///feed", "that URL has no host name"),
        ("http://user:secret@example.com/", "user name or password"),
        ("http://user@example.com/", "user name or password"),
        ("http://example.com/a b", "spaces or control characters"),
        ("", "that URL is empty"),
        ("http://example.com:99999/", "not a valid URL"),
        ("http://example.com/" + "a" * 5000, "longer than"),
    ],
)
def test_check_url_syntax_rejects_with_one_line_reason(url: str, message: str) -> None:
    with pytest.raises(UserError) as info:
        check_url_syntax(url)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "::1", "10.0.0.1", "169.254.169.254", "::ffff:127.0.0.1", "0.0.0.0"],
)
def test_check_host_blocks_private_ip_literals(host: str) -> None:
    with pytest.raises(BlockedAddressError) as info:
        check_host(host, allow_private=False)
    assert str(info.value) == f"{host} is a private address; Starling does not fetch those"


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "127.1", "0x7f000001", "017700000001"])
def test_check_host_blocks_legacy_numeric_hosts(host: str) -> None:
    with pytest.raises(BlockedAddressError, match="not a normal IP address"):
        check_host(host, allow_private=False)


def test_check_host_leaves_names_to_the_resolver() -> None:
    check_host("example.com", allow_private=False)
    check_host("localhost", allow_private=False)  # judged after resolution
    check_host("8.8.8.8", allow_private=False)
    check_host("127.0.0.1", allow_private=True)
    with pytest.raises(BlockedAddressError):
        check_host("169.254.169.254", allow_private=True)


class MapResolver(AbstractResolver):
    """Answers from a dict and never touches real DNS."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.closed = False

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            ResolveResult(
                hostname=host,
                host=addr,
                port=port,
                family=socket.AF_INET6 if ":" in addr else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for addr in self.table[host]
        ]

    async def close(self) -> None:
        self.closed = True


async def test_resolver_drops_private_answers_and_keeps_public_ones() -> None:
    inner = MapResolver({"mixed.example": ["127.0.0.1", "93.184.216.34", "::1", "10.0.0.5"]})
    resolver = GuardedResolver(inner=inner)
    results = await resolver.resolve("mixed.example", 443)
    assert [r["host"] for r in results] == ["93.184.216.34"]


async def test_resolver_blocks_a_name_that_only_points_inward() -> None:
    inner = MapResolver({"rebind.example": ["127.0.0.1", "169.254.169.254"]})
    resolver = GuardedResolver(inner=inner)
    with pytest.raises(BlockedAddressError) as info:
        await resolver.resolve("rebind.example", 80)
    assert str(info.value) == (
        "rebind.example resolves to a private address; Starling does not fetch those"
    )
    assert isinstance(info.value, OSError)  # so aiohttp wraps it like a DNS failure


async def test_resolver_with_private_allowed_still_refuses_metadata() -> None:
    inner = MapResolver({"intranet": ["10.0.0.5"], "meta": ["169.254.169.254"]})
    resolver = GuardedResolver(inner=inner, allow_private=True)
    assert [r["host"] for r in await resolver.resolve("intranet", 80)] == ["10.0.0.5"]
    with pytest.raises(BlockedAddressError):
        await resolver.resolve("meta", 80)


async def test_resolver_passes_dns_failures_through_and_leaves_inner_open() -> None:
    inner = MapResolver({"empty.example": []})
    resolver = GuardedResolver(inner=inner)
    with pytest.raises(socket.gaierror):
        await resolver.resolve("missing.example", 80)
    with pytest.raises(socket.gaierror):
        await resolver.resolve("empty.example", 80)
    await resolver.close()
    assert not inner.closed  # the caller owns a resolver it handed in
