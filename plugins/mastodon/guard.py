"""The SSRF guard for httpx and websockets: vet addresses at the moment of connecting.

httpx has no resolver hook, so `GuardedTransport` gives its connection pool a
network backend that resolves the host itself, keeps only addresses
`bot.netguard` allows, and connects to one of those. A host that rebinds to an
inner address between two requests is caught because every new connection is
vetted. The websocket side uses `vetted_address` and connects to that address.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable

import httpcore
import httpx

from bot.netguard import BlockedAddressError, address_allowed, check_host


async def vetted_addresses(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses of `host` that Starling may connect to; raises `BlockedAddressError`."""
    check_host(host, allow_private=allow_private)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [host]
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    allowed: list[str] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = str(sockaddr[0])
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            continue
        if address_allowed(ip, allow_private=allow_private) and address not in allowed:
            allowed.append(address)
    if not allowed:
        raise BlockedAddressError(
            host, f"{host} resolves to a private address; Starling does not fetch those"
        )
    return allowed


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connects only to vetted addresses; TLS still verifies the original host name."""

    def __init__(self, *, allow_private: bool) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._allow_private = allow_private

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await vetted_addresses(host, port, allow_private=self._allow_private)
        last: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedAddressError(path, "unix sockets are not fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, with its pool rebuilt around the guarded backend.

    httpx takes no network backend argument, so the pool it built is replaced by
    an identical one (same limits) that uses `_GuardedBackend`.
    """

    def __init__(self, *, allow_private: bool, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(allow_private=allow_private),
        )
