"""SSRF guard for every URL that reaches Starling from chat.

A member can paste any URL; without this guard they could make the bot read its
own cloud metadata, an intranet admin page or a service on loopback and relay the
answer into chat. Addresses are judged AFTER DNS resolution (in `GuardedResolver`,
which aiohttp consults for every new connection) and IP-literal hosts, which
aiohttp never hands to a resolver, are judged by `check_host` before each request
and each redirect hop.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from bot.errors import UserError

IPAddress = IPv4Address | IPv6Address
AddressPolicy = Callable[[IPAddress], bool]

MAX_URL_LENGTH = 4096
_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")

# Not globally reachable, or reachable but meaning "this machine / this network".
# Spelled out rather than trusting `ipaddress.is_global`, whose tables vary by
# Python patch release and which counts multicast as global.
_V4_BLOCKED: tuple[IPv4Network, ...] = tuple(
    IPv4Network(net)
    for net in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 connects to the local host on Linux
        "10.0.0.0/8",
        "100.64.0.0/10",  # CGNAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, includes broadcast
    )
)

# Only global unicast (2000::/3) can be public; inside it these are not.
_V6_GLOBAL_UNICAST = IPv6Network("2000::/3")
_V6_BLOCKED: tuple[IPv6Network, ...] = tuple(
    IPv6Network(net)
    for net in (
        "2001::/23",  # IETF protocol assignments, includes Teredo 2001::/32
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
    )
)
_V6_MAPPED = IPv6Network("::ffff:0:0/96")
_V6_6TO4 = IPv6Network("2002::/16")
_V6_NAT64 = IPv6Network("64:ff9b::/96")

# Never fetched, not even when private addresses are allowed: nothing a feed
# reader wants lives there, and credentials do.
_METADATA: frozenset[IPAddress] = frozenset(
    {
        IPv4Address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, ...
        IPv4Address("169.254.170.2"),  # AWS ECS task metadata
        IPv4Address("100.100.100.200"),  # Alibaba Cloud
        IPv6Address("fd00:ec2::254"),  # AWS IMDS over IPv6
    }
)


class BlockedAddressError(OSError):
    """A URL's host is, or resolves to, an address Starling must not fetch.

    An `OSError` so that aiohttp wraps it like any resolver failure; the fetcher
    recognises it (also as the cause of `ClientConnectorDNSError`) and reports
    `Outcome.BLOCKED` instead of a DNS failure.
    """

    def __init__(self, host: str, message: str) -> None:
        super().__init__(message)
        self.host = host
        self.message = message

    def __str__(self) -> str:
        return self.message


def _embedded_ipv4(ip: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address really reaches (mapped, 6to4, NAT64)."""
    if ip in _V6_MAPPED:
        return ip.ipv4_mapped
    if ip in _V6_6TO4:
        return ip.sixtofour
    if ip in _V6_NAT64:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public_address(ip: IPv4Address | IPv6Address) -> bool:
    """True only for globally routable unicast addresses, judging embedded IPv4 too."""
    if isinstance(ip, IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_public_address(embedded)
        if ip not in _V6_GLOBAL_UNICAST:
            return False
        return not any(ip in net for net in _V6_BLOCKED)
    if any(ip in net for net in _V4_BLOCKED):
        return False
    return ip.is_global and not ip.is_multicast


def is_metadata_address(ip: IPv4Address | IPv6Address) -> bool:
    """Cloud metadata endpoints, also when wrapped in an IPv6 address."""
    if ip in _METADATA:
        return True
    if isinstance(ip, IPv6Address):
        embedded = _embedded_ipv4(ip)
        return embedded is not None and embedded in _METADATA
    return False


def address_allowed(
    ip: IPv4Address | IPv6Address,
    *,
    allow_private: bool,
    policy: AddressPolicy = is_public_address,
) -> bool:
    """The one rule both the resolver and the IP-literal check apply."""
    if is_metadata_address(ip):
        return False
    return allow_private or policy(ip)


def _blocked_message(host: str, *, resolved: bool) -> str:
    verb = "resolves to" if resolved else "is"
    return f"{host} {verb} a private address; Starling does not fetch those"


def parse_http_url(url: str) -> URL:
    """Parse and vet a URL's syntax; raise `UserError` with a one-line reason."""
    text = url.strip()
    if not text:
        raise UserError("that URL is empty")
    if len(text) > MAX_URL_LENGTH:
        raise UserError(f"that URL is longer than {MAX_URL_LENGTH} characters")
    if _SPACE_OR_CONTROL.search(text):
        raise UserError("that URL contains spaces or control characters")
    try:
        parsed = URL(text)
        scheme = parsed.scheme.lower()
        host = parsed.host
        port = parsed.port  # yarl validates the port lazily
    except (ValueError, UnicodeError) as exc:
        raise UserError(f"that is not a valid URL ({exc})") from None
    if scheme not in ("http", "https"):
        raise UserError("only http:// and https:// URLs can be followed")
    if not host:
        raise UserError("that URL has no host name")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise UserError("URLs with a user name or password in them are not followed")
    if port is not None and not 0 < port < 65536:
        raise UserError("that URL has an invalid port")
    if parsed.raw_fragment:
        parsed = parsed.with_fragment(None)
    return parsed


def check_url_syntax(url: str) -> str:
    """Vet a URL typed in chat and return it normalised (lower-case host, IDNA, no fragment)."""
    return str(parse_http_url(url))


def _legacy_numeric_ipv4(host: str) -> bool:
    """Hosts like `2130706433` or `0x7f.1` that C resolvers turn into an IPv4 address."""
    try:
        socket.inet_aton(host)
    except (OSError, ValueError):
        return False
    return True


def check_host(
    host: str,
    *,
    allow_private: bool,
    policy: AddressPolicy = is_public_address,
) -> None:
    """Reject an IP-literal host that is not allowed; names are left to the resolver.

    aiohttp connects to IP literals without consulting the resolver, so this must
    run before every request, including every redirect hop.
    """
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if _legacy_numeric_ipv4(host):
            raise BlockedAddressError(
                host, f"{host} is not a normal IP address; Starling does not fetch those"
            ) from None
        return
    if not address_allowed(ip, allow_private=allow_private, policy=policy):
        raise BlockedAddressError(host, _blocked_message(host, resolved=False))


class GuardedResolver(AbstractResolver):
    """Wraps a resolver and drops the addresses Starling must not connect to.

    aiohttp asks its connector's resolver for every new connection to a host name
    (cached for `ttl_dns_cache`), so rebinding tricks and redirects to a name that
    points inward are caught at the moment of connecting. If nothing allowed is
    left, `BlockedAddressError` is raised.
    """

    def __init__(
        self,
        *,
        allow_private: bool = False,
        inner: AbstractResolver | None = None,
        policy: AddressPolicy = is_public_address,
    ) -> None:
        if inner is None:
            from aiohttp.resolver import DefaultResolver

            inner = DefaultResolver()
            self._owns_inner = True
        else:
            self._owns_inner = False
        self._inner = inner
        self._allow_private = allow_private
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if not results:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} has no addresses")
        allowed: list[ResolveResult] = []
        for result in results:
            try:
                ip = ipaddress.ip_address(result["host"])
            except ValueError:
                continue  # fail closed on anything that is not an address
            if address_allowed(ip, allow_private=self._allow_private, policy=self._policy):
                allowed.append(result)
        if not allowed:
            raise BlockedAddressError(host, _blocked_message(host, resolved=True))
        return allowed

    async def close(self) -> None:
        if self._owns_inner:
            await self._inner.close()
