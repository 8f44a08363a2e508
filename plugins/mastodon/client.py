"""One httpx client per Mastodon instance: JSON in, classified failures out.

Every request ends in exactly one health record (unless the rate limiter holds it
back before anything is sent). Failures raise `ApiError`, an `UpstreamError` that
also carries the HTTP status and Mastodon's own `{"error": …}` text, so callers
can turn a 404 from a lookup into "no such account".
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

import httpx

from bot.clock import Clock
from bot.errors import Outcome, UpstreamError
from bot.html import plain_text
from bot.httputil import reason_phrase
from bot.netguard import BlockedAddressError
from bot.protocols import HealthRecorder
from plugins.mastodon.guard import GuardedTransport
from plugins.mastodon.instances import Instance
from plugins.mastodon.ratelimit import RateLimiter

log = logging.getLogger(__name__)

_LIMITS = httpx.Limits(max_connections=20, max_keepalive_connections=10, keepalive_expiry=30)
_AUTH = frozenset({401, 403})


class ApiError(UpstreamError):
    """A failed API call; `error` is the server's own (untrusted, clipped) reason."""


@dataclass(frozen=True, slots=True)
class ApiResponse:
    status: int
    headers: httpx.Headers
    data: Any


def _server_error_text(body: bytes) -> str:
    """Mastodon's `{"error": "…"}` as one short plain line, or ""."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return plain_text(data["error"])[:200]
    return ""


def anonymous_refused(instance: Instance, status: int) -> str:
    """One line for chat when a server (GoToSocial by default) refuses anonymous reads."""
    domain = instance.domain
    option = (
        "[mastodon] token (or STARLING_MASTODON__TOKEN)"
        if instance.is_default
        else f'[mastodon] tokens = {{ "{domain}" = "…" }} (or STARLING_MASTODON__TOKENS={domain}=…)'
    )
    return (
        f"{domain} does not let Starling read without an access token "
        f"({status} {reason_phrase(status)}); give Starling a token for it with {option}"
    )


class InstanceClient:
    """Talks to one instance's REST API, honouring its rate limit."""

    def __init__(
        self,
        instance: Instance,
        *,
        network: str,
        health: HealthRecorder,
        clock: Clock,
        token: str | None,
        allow_private: bool,
        timeout_s: float,
        max_bytes: int,
        user_agent: str,
        rate_limit_reserve: int,
    ) -> None:
        self.instance = instance
        self._network = network
        self._health = health
        self._clock = clock
        self._timeout_s = timeout_s
        self._max_bytes = max_bytes
        self.limiter = RateLimiter(rate_limit_reserve)
        headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.authenticated = bool(token)
        transport: httpx.AsyncBaseTransport = (
            httpx.AsyncHTTPTransport(limits=_LIMITS, trust_env=False)
            if instance.trusted
            else GuardedTransport(allow_private=allow_private, limits=_LIMITS)
        )
        self._http = httpx.AsyncClient(
            base_url=instance.base_url,
            headers=headers,
            transport=transport,
            timeout=httpx.Timeout(timeout_s),
            follow_redirects=True,
            max_redirects=3,
            trust_env=False,
        )

    @property
    def domain(self) -> str:
        return self.instance.domain

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get(
        self, path: str, params: dict[str, str] | None = None, *, expect: type = object
    ) -> ApiResponse:
        return await self.request("GET", path, params=params, expect=expect)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        data: dict[str, str] | dict[str, str | list[str]] | None = None,
        headers: dict[str, str] | None = None,
        expect: type = object,
        files: dict[str, tuple[str, bytes, str]] | None = None,
    ) -> ApiResponse:
        """One API call; raises `ApiError` (recorded) or `UpstreamError` (held back).

        `expect` is the JSON type the answer must have (list for timelines, dict for
        objects); anything else is a parse failure, recorded as such.
        """
        wait = self.limiter.wait_s(self._clock.now())
        if wait > 0:
            raise UpstreamError(
                Outcome.RATE_LIMITED,
                f"{self.domain} asked Starling to slow down; the next request waits {wait:.0f} s",
                retry_after_s=wait,
            )
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout_s):
                status, resp_headers, body = await self._exchange(
                    method, path, params, data, headers, files
                )
        except ApiError:
            raise
        except (TimeoutError, httpx.TimeoutException):
            raise self._fail(
                Outcome.TIMEOUT,
                f"{self.domain} did not answer within {self._timeout_s:g} s",
                started,
            ) from None
        except BlockedAddressError as exc:
            raise self._fail(Outcome.BLOCKED, str(exc), started) from None
        except socket.gaierror:
            raise self._fail(
                Outcome.DNS, f"{self.domain} could not be found (DNS lookup failed)", started
            ) from None
        except httpx.ConnectError as exc:
            if isinstance(exc.__cause__, ssl.SSLError) or "SSL" in str(exc):
                raise self._fail(
                    Outcome.TLS, f"the TLS handshake with {self.domain} failed", started
                ) from None
            raise self._fail(
                Outcome.REFUSED, f"{self.domain} refused the connection", started
            ) from None
        except httpx.TooManyRedirects:
            raise self._fail(
                Outcome.HTTP_4XX, f"{self.domain} redirected too many times", started
            ) from None
        except (httpx.HTTPError, OSError):
            raise self._fail(
                Outcome.STREAM_DROPPED,
                f"{self.domain} closed the connection before the answer was complete",
                started,
            ) from None
        retry_after = self.limiter.update(resp_headers, self._clock.now(), status=status)
        if status >= 400:
            raise self._status_error(status, body, started, retry_after)
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            what = "a web page" if body.lstrip()[:1] == b"<" else "something that is not JSON"
            raise self._fail(
                Outcome.PARSE,
                f"{self.domain} answered with {what}, not the Mastodon API",
                started,
                status,
            ) from None
        if not isinstance(parsed, expect):
            raise self._fail(
                Outcome.PARSE,
                f"{self.domain} answered with JSON of an unexpected shape, not the Mastodon API",
                started,
                status,
            )
        self._health.record(
            self._network,
            self.domain,
            Outcome.OK,
            latency_s=time.monotonic() - started,
            status=status,
        )
        return ApiResponse(status, resp_headers, parsed)

    async def _exchange(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None,
        data: dict[str, str] | dict[str, str | list[str]] | None,
        headers: dict[str, str] | None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
    ) -> tuple[int, httpx.Headers, bytes]:
        """Send and read the body, refusing bodies over `max_bytes`."""
        request = self._http.build_request(
            method, path, params=params, data=data, headers=headers, files=files
        )
        response = await self._http.send(request, stream=True)
        try:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self._max_bytes:
                    raise self._fail(
                        Outcome.TOO_LARGE,
                        f"{self.domain} sent more than {self._max_bytes / 1_000_000:g} MB",
                        time.monotonic(),
                        response.status_code,
                    )
                chunks.append(chunk)
        finally:
            await response.aclose()
        return response.status_code, response.headers, b"".join(chunks)

    def _status_error(
        self, status: int, body: bytes, started: float, retry_after: float | None
    ) -> ApiError:
        error = _server_error_text(body)
        message = f"{self.domain} answered {status} {reason_phrase(status)}".rstrip()
        outcome = Outcome.for_status(status, auth=_AUTH)
        if outcome is Outcome.RATE_LIMITED and retry_after is not None:
            message += f" (rate limited; retry in {retry_after:.0f} s)"
        elif outcome is Outcome.AUTH and not self.authenticated:
            message = anonymous_refused(self.instance, status)
        elif outcome is Outcome.AUTH:
            message += " (it wants a valid access token with the right scopes)"
        return self._fail(outcome, message, started, status, retry_after, error=error)

    def _fail(
        self,
        outcome: Outcome,
        message: str,
        started: float,
        status: int | None = None,
        retry_after_s: float | None = None,
        *,
        error: str = "",
    ) -> ApiError:
        self._health.record(
            self._network,
            self.domain,
            outcome,
            latency_s=time.monotonic() - started,
            status=status,
            detail=message,
        )
        return ApiError(outcome, message, status=status, retry_after_s=retry_after_s, error=error)
