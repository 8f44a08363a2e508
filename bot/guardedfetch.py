"""One GET of a URL a member (or a post) named, with the SSRF guard on every hop.

Post-back images and Bluesky link cards both fetch pages and pictures from links that
come from chat. aiohttp follows redirects before anyone can look at them, so here
they are followed by hand: each hop's host is checked before connecting, and the
resolver refuses private addresses after DNS as well (`bot.netguard`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import hdrs
from yarl import URL

from bot.errors import UserError
from bot.netguard import GuardedResolver, check_host, parse_http_url

MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class Fetched:
    url: str  # after redirects
    content_type: str
    body: bytes


def guarded_session(*, allow_private: bool, user_agent: str) -> aiohttp.ClientSession:
    """A small session whose resolver refuses private addresses (unless allowed)."""
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allow_private=allow_private), limit=4)
    return aiohttp.ClientSession(
        connector=connector,
        headers={hdrs.USER_AGENT: user_agent},
        timeout=aiohttp.ClientTimeout(total=None),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )


async def guarded_get(
    session: aiohttp.ClientSession,
    url: str,
    *,
    allow_private: bool,
    limit: int,
    too_large: str = "",
    check_type: Callable[[str], None] | None = None,
) -> Fetched:
    """GET `url`, at most `limit` bytes. Raises `UserError` for a refused host, an answer
    other than 200, a body over the limit (`too_large` says it, if given), or whatever
    `check_type` refuses about the Content-Type before the body is read."""
    current: URL = parse_http_url(url)
    for _ in range(MAX_REDIRECTS + 1):
        check_host(current.host or "", allow_private=allow_private)
        async with session.get(current, allow_redirects=False) as response:
            if response.status in _REDIRECTS and response.headers.get(hdrs.LOCATION):
                current = parse_http_url(str(current.join(URL(response.headers[hdrs.LOCATION]))))
                continue
            if response.status != 200:
                raise UserError(f"{current.host} answered {response.status}")
            content_type = response.headers.get(hdrs.CONTENT_TYPE, "")
            if check_type is not None:
                check_type(content_type)
            refusal = too_large or f"{current} is larger than {limit} bytes"
            if (response.content_length or 0) > limit:
                raise UserError(refusal)
            body = bytearray()
            async for chunk in response.content.iter_chunked(65536):
                body += chunk
                if len(body) > limit:
                    raise UserError(refusal)
            return Fetched(str(current), content_type, bytes(body))
    raise UserError(f"{url} redirects too often")
