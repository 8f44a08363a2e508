"""HTTP fetching for the feeds source: the hot path when polling up to 100,000 feeds.

One shared `aiohttp.ClientSession` serves every fetch. Redirects are followed by
hand so each hop's URL passes the SSRF guard before anything connects; the
connector's `GuardedResolver` vets every address a host name resolves to. Every
request ends in exactly one health record, so the outage work sees each host's
real behaviour, redirect hops included.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from types import TracebackType

import aiohttp
from aiohttp import hdrs
from aiohttp.abc import AbstractResolver
from aiohttp.http_exceptions import ContentEncodingError
from yarl import URL

from bot.errors import Outcome, UpstreamError, UserError
from bot.httputil import parse_retry_after, reason_phrase
from bot.netguard import (
    AddressPolicy,
    BlockedAddressError,
    GuardedResolver,
    check_host,
    is_public_address,
    parse_http_url,
)
from bot.protocols import HealthRecorder

DEFAULT_USER_AGENT = "Starling/0.1 (feed relay)"
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.5"
)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PERMANENT = frozenset({301, 308})
_AUTH = frozenset({401, 403, 407})


@dataclass(frozen=True, slots=True)
class FetchResponse:
    """A successful (2xx) or not-modified (304) answer.

    `url` is the final URL after redirects. `permanent_redirect` is true when every
    hop was a 301/308, so the caller may store `url` in place of the one it asked
    for. On 304 the body is empty and the validators fall back to the ones sent.
    `content_type` is the raw header, charset included, for the parser.
    """

    url: str
    status: int
    body: bytes
    content_type: str
    etag: str | None
    last_modified: str | None
    not_modified: bool
    permanent_redirect: bool = False


def _host_of(url: str) -> str:
    try:
        return URL(url.strip()).host or ""
    except (ValueError, UnicodeError):
        return ""


class FeedFetcher:
    """Fetches feed documents with conditional GET, a size cap and the SSRF guard.

    Requests in flight are capped by Starling's own FIFO semaphore (acquired before
    the timeout starts) because aiohttp's connection pool wakes waiters in no fair
    order. `resolver` and `address_policy` are seams for tests: a fake resolver that
    maps made-up names to loopback, and a policy that pretends one loopback address
    is public.
    """

    def __init__(
        self,
        *,
        network: str,
        health: HealthRecorder,
        allow_private: bool,
        timeout_s: float = 20,
        max_bytes: int = 5_000_000,
        max_in_flight: int = 100,
        max_redirects: int = 5,
        user_agent: str = DEFAULT_USER_AGENT,
        ttl_dns_cache_s: int = 300,
        resolver: AbstractResolver | None = None,
        address_policy: AddressPolicy = is_public_address,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._network = network
        self._health = health
        self._allow_private = allow_private
        self._timeout_s = float(timeout_s)
        self._max_bytes = max_bytes
        self._max_in_flight = max_in_flight
        self._max_redirects = max_redirects
        self._ttl_dns_cache_s = ttl_dns_cache_s
        self._inner_resolver = resolver
        self._policy = address_policy
        self._headers = {
            hdrs.USER_AGENT: user_agent,
            hdrs.ACCEPT: ACCEPT,
            hdrs.ACCEPT_ENCODING: "gzip, deflate",
        }
        self._slots = asyncio.Semaphore(max_in_flight)
        self._session: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None
        self._closed = False

    async def __aenter__(self) -> FeedFetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _open_session(self) -> aiohttp.ClientSession:
        """Build the shared session; must run inside the event loop that will use it."""
        self._resolver = GuardedResolver(
            allow_private=self._allow_private, inner=self._inner_resolver, policy=self._policy
        )
        connector = aiohttp.TCPConnector(
            resolver=self._resolver,
            limit=self._max_in_flight,
            use_dns_cache=True,
            ttl_dns_cache=self._ttl_dns_cache_s,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            # One deadline per fetch (asyncio.timeout) covers connect, redirects
            # and body; no per-request aiohttp timers.
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=True,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            raise_for_status=False,
        )
        return self._session

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        resolver, self._resolver = self._resolver, None
        if resolver is not None:
            await resolver.close()

    async def fetch(
        self, url: str, *, etag: str | None = None, last_modified: str | None = None
    ) -> FetchResponse:
        """GET a feed; raise `UpstreamError` with a one-line, chat-readable message."""
        try:
            target = parse_http_url(url)
        except UserError as exc:
            message = str(exc)
            self._health.record(self._network, _host_of(url), Outcome.BLOCKED, detail=message)
            raise UpstreamError(Outcome.BLOCKED, message) from None
        if self._closed:
            raise RuntimeError("FeedFetcher is closed")
        session = self._session or self._open_session()
        headers: dict[str, str] | None = None
        if etag or last_modified:
            headers = {}
            if etag:
                headers[hdrs.IF_NONE_MATCH] = etag
            if last_modified:
                headers[hdrs.IF_MODIFIED_SINCE] = last_modified
        async with self._slots:
            return await self._follow(session, target, headers, etag, last_modified)

    async def _follow(
        self,
        session: aiohttp.ClientSession,
        current: URL,
        headers: dict[str, str] | None,
        etag: str | None,
        last_modified: str | None,
    ) -> FetchResponse:
        """Request `current`, following redirects by hand; one health record per request."""
        host = current.host or ""
        started = time.monotonic()
        hops = 0
        all_permanent = True
        try:
            async with asyncio.timeout(self._timeout_s):
                while True:
                    host = current.host or ""
                    started = time.monotonic()
                    check_host(host, allow_private=self._allow_private, policy=self._policy)
                    async with session.get(current, headers=headers, allow_redirects=False) as resp:
                        status = resp.status
                        if 200 <= status < 300:
                            body = await self._read_body(resp, host, started)
                            self._record(host, Outcome.OK, started, status)
                            resp_headers = resp.headers
                            return FetchResponse(
                                url=str(current),
                                status=status,
                                body=body,
                                content_type=resp_headers.get(hdrs.CONTENT_TYPE, ""),
                                etag=resp_headers.get(hdrs.ETAG),
                                last_modified=resp_headers.get(hdrs.LAST_MODIFIED),
                                not_modified=False,
                                permanent_redirect=hops > 0 and all_permanent,
                            )
                        if status == 304:
                            self._record(host, Outcome.NOT_MODIFIED, started, status)
                            resp_headers = resp.headers
                            return FetchResponse(
                                url=str(current),
                                status=status,
                                body=b"",
                                content_type=resp_headers.get(hdrs.CONTENT_TYPE, ""),
                                etag=resp_headers.get(hdrs.ETAG) or etag,
                                last_modified=resp_headers.get(hdrs.LAST_MODIFIED) or last_modified,
                                not_modified=True,
                                permanent_redirect=hops > 0 and all_permanent,
                            )
                        if status in _REDIRECTS:
                            current = self._next_hop(resp, host, started, hops)
                            self._record(host, Outcome.OK, started, status)
                            all_permanent = all_permanent and status in _PERMANENT
                            hops += 1
                            continue
                        raise self._status_error(resp, host, started)
        except UpstreamError:
            raise
        except BlockedAddressError as exc:
            raise self._fail(host, Outcome.BLOCKED, str(exc), started) from None
        except TimeoutError:
            message = f"{host} did not answer within {self._timeout_s:g} s"
            raise self._fail(host, Outcome.TIMEOUT, message, started) from None
        except aiohttp.ClientConnectorDNSError as exc:
            if isinstance(exc.os_error, BlockedAddressError):
                raise self._fail(host, Outcome.BLOCKED, str(exc.os_error), started) from None
            message = f"{host} could not be found (DNS lookup failed)"
            raise self._fail(host, Outcome.DNS, message, started) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            reason = getattr(exc.certificate_error, "verify_message", "") or "not trusted"
            message = f"{host} has an invalid TLS certificate ({reason})"
            raise self._fail(host, Outcome.TLS, message, started) from None
        except (aiohttp.ClientSSLError, ssl.SSLError):
            message = f"the TLS handshake with {host} failed"
            raise self._fail(host, Outcome.TLS, message, started) from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, ConnectionRefusedError):
                message = f"{host} refused the connection"
            else:
                message = f"could not connect to {host} ({exc.strerror or 'network error'})"
            raise self._fail(host, Outcome.REFUSED, message, started) from None
        except aiohttp.InvalidURL:
            message = f"{host} is not a valid host name"
            raise self._fail(host, Outcome.BLOCKED, message, started) from None
        except aiohttp.ClientResponseError:
            message = f"{host} sent a malformed HTTP response"
            raise self._fail(host, Outcome.PARSE, message, started) from None
        except aiohttp.ClientPayloadError as exc:
            if isinstance(exc.__cause__, ContentEncodingError):
                message = f"{host} sent a compressed body that could not be decoded"
                raise self._fail(host, Outcome.PARSE, message, started) from None
            message = f"{host} closed the connection before the response was complete"
            raise self._fail(host, Outcome.STREAM_DROPPED, message, started) from None
        except (aiohttp.ClientError, ConnectionError):
            message = f"{host} closed the connection before the response was complete"
            raise self._fail(host, Outcome.STREAM_DROPPED, message, started) from None
        except OSError as exc:
            message = f"could not connect to {host} ({exc.strerror or 'network error'})"
            raise self._fail(host, Outcome.REFUSED, message, started) from None

    def _next_hop(self, resp: aiohttp.ClientResponse, host: str, started: float, hops: int) -> URL:
        """Where a redirect points, vetted like a URL typed in chat."""
        status = resp.status
        if hops >= self._max_redirects:
            message = f"{host} redirected more than {self._max_redirects} times (a redirect loop?)"
            raise self._fail(host, Outcome.HTTP_4XX, message, started, status)
        location = resp.headers.get(hdrs.LOCATION)
        if not location:
            message = f"{host} answered {status} {reason_phrase(status)} without saying where to"
            raise self._fail(host, Outcome.HTTP_4XX, message, started, status)
        try:
            joined = resp.url.join(URL(location))
        except (ValueError, UnicodeError):
            message = f"{host} redirected to an invalid URL"
            raise self._fail(host, Outcome.HTTP_4XX, message, started, status) from None
        try:
            return parse_http_url(str(joined))
        except UserError as exc:
            message = f"{host} redirected to a URL Starling will not follow: {exc}"
            raise self._fail(host, Outcome.BLOCKED, message, started, status) from None

    async def _read_body(self, resp: aiohttp.ClientResponse, host: str, started: float) -> bytes:
        """Stream the body, stopping as soon as it passes the cap (decompressed size counts)."""
        limit = self._max_bytes
        length = resp.content_length
        if length is not None and length > limit:
            resp.close()
            raise self._too_large(host, started, resp.status)
        chunks: list[bytes] = []
        size = 0
        content = resp.content
        while chunk := await content.readany():
            size += len(chunk)
            if size > limit:
                resp.close()
                raise self._too_large(host, started, resp.status)
            chunks.append(chunk)
        if len(chunks) == 1:
            return chunks[0]
        return b"".join(chunks)

    def _too_large(self, host: str, started: float, status: int) -> UpstreamError:
        message = f"the feed is larger than {self._max_bytes / 1_000_000:g} MB"
        return self._fail(host, Outcome.TOO_LARGE, message, started, status)

    def _status_error(
        self, resp: aiohttp.ClientResponse, host: str, started: float
    ) -> UpstreamError:
        status = resp.status
        message = f"{host} answered {status} {reason_phrase(status)}".rstrip()
        outcome = Outcome.for_status(status, auth=_AUTH)
        retry_after: float | None = None
        if status in (429, 503):
            retry_after = parse_retry_after(resp.headers.get(hdrs.RETRY_AFTER))
        if retry_after is not None:
            message = f"{message} (retry after {retry_after:.0f} s)"
        return self._fail(host, outcome, message, started, status, retry_after)

    def _record(self, host: str, outcome: Outcome, started: float, status: int) -> None:
        self._health.record(
            self._network, host, outcome, latency_s=time.monotonic() - started, status=status
        )

    def _fail(
        self,
        host: str,
        outcome: Outcome,
        message: str,
        started: float,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> UpstreamError:
        """Record the failed request and build the error to raise."""
        self._health.record(
            self._network,
            host,
            outcome,
            latency_s=time.monotonic() - started,
            status=status,
            detail=message,
        )
        return UpstreamError(outcome, message, status=status, retry_after_s=retry_after_s)
