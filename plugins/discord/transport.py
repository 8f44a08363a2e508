"""Point discord.py at the configured API and gateway, and report every request.

discord.py builds each URL from the class attribute `discord.http.Route.BASE` and
connects the gateway to the class attribute `DiscordWebSocket.DEFAULT_GATEWAY`.
Setting those would be simplest, but they are process-wide: two clients (or two
tests) could not use two servers. Instead this client rebases URLs at the three
places a request leaves discord.py:

* `RebasedHTTPClient.request` — every REST call made with the bot token;
* `RebasedHTTPClient.ws_connect` — the gateway; a connection to discord.py's
  built-in default goes to `[discord] gateway_url`, or to what `GET /gateway/bot`
  answers. Resumes use the `resume_gateway_url` the gateway itself handed out;
* `RebasedWebhookAdapter` — webhook executions and interaction callbacks, which
  discord.py sends through an adapter held in a `ContextVar`. `rebased()` sets it
  for the current task; tasks started from there (the gateway loop, the handlers
  it spawns) inherit it.

The price is reliance on those three discord.py seams (stable across 2.x, and
the tests run the real client through them against a local server).

Every REST call made with the bot token also passes `RequestGate`: Discord allows
a bot 50 requests per second over all routes, and the dispatcher's
`max_rate_per_s` only paces sends. The channel lookups and logins around them
went over 50/s at start-up when 20 lanes started at once (measured in
`bench/delivery.py`), so the gate spaces all of them out to 48 a second
(`GLOBAL_REQUESTS_PER_S`).
It sits in the session, where a request really leaves: discord.py may still sleep
on a bucket between its `request()` and the wire, and its 429 retries pass here too.

One more guard lives here: discord.py retries a 5xx blindly. For a message that
carries a nonce Discord dedupes the retry, but a webhook execution or a forum post
has none, so a 5xx after Discord stored it would post twice. `NoBlindRetrySession`
turns a 5xx on those calls into `AnswerLost`; the chat then looks before resending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import time
from collections.abc import Iterator, Sequence
from typing import Any

import aiohttp
import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import HTTPClient, Route
from discord.webhook.async_ import AsyncWebhookAdapter, async_context

from bot.errors import Outcome
from bot.protocols import HealthRecorder

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://discord.com/api/v10"
# Discord's global limit is 50/s per bot; 4% stays free for network jitter bunching
# requests up on the way, and for the 429 retries discord.py makes on its own.
GLOBAL_REQUESTS_PER_S = 48.0


class RequestGate:
    """Bot-token requests start at least `1 / per_s` apart, first come first served.

    Even spacing, not "N per second": with a sliding window, a burst at the end of one
    second and another at the start of the next can arrive inside one of Discord's
    seconds when their latencies differ (a new connection, a slow hop). Measured in
    `bench/delivery.py` with 100 ms of round trip: 45 per client-side second still
    arrived as 51 in one. Spaced, a request can only be as early as its latency varies.
    """

    def __init__(self, per_s: float = GLOBAL_REQUESTS_PER_S) -> None:
        self.spacing_s = 1.0 / per_s
        self._next = 0.0
        self.waited = 0  # requests that had to wait for their slot, for tests and the bench

    async def wait(self) -> None:
        now = time.monotonic()
        slot = max(now, self._next)
        self._next = slot + self.spacing_s  # reserved at once: no lock, order kept
        if slot > now:
            self.waited += 1
            await asyncio.sleep(slot - now)


def rebase(url: str, api_url: str) -> str:
    """Move a URL built on discord.py's default base onto the configured one."""
    base = Route.BASE
    if url.startswith(base):
        return api_url.rstrip("/") + url[len(base) :]
    return url


# POSTs that create a message with no nonce for Discord to dedupe a retry on.
_NO_NONCE_POST = re.compile(r"/webhooks/\d+/[^/]+$|/channels/\d+/threads$")


class AnswerLost(Exception):
    """Discord failed (5xx) on a call that may have posted already; look before resending."""

    def __init__(self, status: int) -> None:
        super().__init__(f"Discord answered {status}; the post may or may not exist")
        self.status = status


class _RaiseOnServerError:
    """`async with` wrapper around aiohttp's request manager: a 5xx raises `AnswerLost`."""

    __slots__ = ("_manager",)

    def __init__(self, manager: Any) -> None:
        self._manager = manager

    async def __aenter__(self) -> aiohttp.ClientResponse:
        response: aiohttp.ClientResponse = await self._manager.__aenter__()
        if response.status >= 500:
            await self._manager.__aexit__(None, None, None)
            raise AnswerLost(response.status)
        return response

    async def __aexit__(self, *exc: Any) -> None:
        await self._manager.__aexit__(*exc)


class _Gated:
    """`async with` wrapper that waits for room under the global limit before sending."""

    __slots__ = ("_gate", "_manager")

    def __init__(self, manager: Any, gate: RequestGate) -> None:
        self._manager = manager
        self._gate = gate

    async def __aenter__(self) -> Any:
        await self._gate.wait()
        return await self._manager.__aenter__()

    async def __aexit__(self, *exc: Any) -> None:
        await self._manager.__aexit__(*exc)


class NoBlindRetrySession:
    """The client's aiohttp session, except that no-nonce posts are never retried on a 5xx,
    and (with a gate) every bot-token request waits for room under the global limit."""

    def __init__(self, session: aiohttp.ClientSession, gate: RequestGate | None = None) -> None:
        self._session = session
        self.gate = gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def request(self, method: str, url: Any, **kwargs: Any) -> Any:
        manager: Any = self._session.request(method, url, **kwargs)
        if method == "POST" and _NO_NONCE_POST.search(yarl.URL(str(url)).path):
            manager = _RaiseOnServerError(manager)
        auth = str((kwargs.get("headers") or {}).get("Authorization", ""))
        if self.gate is not None and auth.startswith("Bot "):
            # Webhooks and interaction callbacks carry no bot token: not under the limit.
            manager = _Gated(manager, self.gate)
        return manager


def _guarded(session: Any, gate: RequestGate | None = None) -> Any:
    if isinstance(session, NoBlindRetrySession):
        session.gate = session.gate or gate
        return session
    return NoBlindRetrySession(session, gate)


class RebasedHTTPClient(HTTPClient):
    """discord.py's HTTP client, talking to `api_url` and the configured gateway."""

    def __init__(
        self,
        loop: Any,
        *,
        api_url: str,
        gateway_url: str,
        http_trace: aiohttp.TraceConfig | None,
        max_ratelimit_timeout: float | None,
    ) -> None:
        super().__init__(loop, http_trace=http_trace, max_ratelimit_timeout=max_ratelimit_timeout)
        self.api_url = api_url.rstrip("/")
        self._gateway_url = gateway_url
        self.gate = RequestGate()

    async def request(
        self,
        route: Route,
        *,
        files: Sequence[discord.File] | None = None,
        form: Any = None,
        **kwargs: Any,
    ) -> Any:
        route.url = rebase(route.url, self.api_url)
        return await super().request(route, files=files, form=form, **kwargs)

    async def static_login(self, token: str) -> Any:
        data = await super().static_login(token)
        # Interactions and webhooks made from the client's state share this session.
        self._HTTPClient__session = _guarded(self._HTTPClient__session, self.gate)  # type: ignore[has-type]
        return data

    async def gateway_url(self) -> str:
        """The configured gateway, else the one `GET /gateway/bot` names (asked once)."""
        if not self._gateway_url:
            _shards, url, _limits = await self.get_bot_gateway()
            self._gateway_url = url
            log.info("Discord gateway: %s", url)
        return self._gateway_url

    async def ws_connect(self, url: str, *, compress: int = 0) -> aiohttp.ClientWebSocketResponse:
        wanted = yarl.URL(url)
        default = DiscordWebSocket.DEFAULT_GATEWAY
        if (wanted.scheme, wanted.host) == (default.scheme, default.host):
            wanted = yarl.URL(await self.gateway_url()).with_query(wanted.query)
        return await super().ws_connect(str(wanted), compress=compress)


class RebasedWebhookAdapter(AsyncWebhookAdapter):
    """Webhook and interaction-callback requests, sent to `api_url`."""

    def __init__(self, api_url: str) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.api_url = api_url

    async def request(self, route: Route, session: aiohttp.ClientSession, **kwargs: Any) -> Any:
        route.url = rebase(route.url, self.api_url)
        return await super().request(route, _guarded(session), **kwargs)


@contextlib.contextmanager
def rebased(adapter: RebasedWebhookAdapter) -> Iterator[None]:
    """Send this task's (and its children's) webhook calls through `adapter`."""
    token = async_context.set(adapter)
    try:
        yield
    finally:
        async_context.reset(token)


def outcome_of_status(status: int) -> Outcome:
    # A 403 is about one channel's permissions, not the service.
    return Outcome.for_status(status, auth=(401,))


def outcome_of_error(exc: BaseException) -> Outcome:
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return Outcome.TIMEOUT
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return Outcome.DNS
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return Outcome.TLS
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectionRefusedError):
        return Outcome.REFUSED
    if isinstance(exc, aiohttp.ContentTypeError | ValueError):
        return Outcome.PARSE
    return Outcome.REFUSED


def health_trace(health: HealthRecorder, network: str) -> aiohttp.TraceConfig:
    """An aiohttp trace that reports each request discord.py makes (429s included)."""
    trace = aiohttp.TraceConfig()

    async def started(_s: aiohttp.ClientSession, ctx: Any, _p: Any) -> None:
        ctx.started = time.monotonic()

    async def ended(
        _s: aiohttp.ClientSession, ctx: Any, params: aiohttp.TraceRequestEndParams
    ) -> None:
        status = params.response.status
        health.record(
            network,
            params.url.host or "",
            outcome_of_status(status),
            latency_s=time.monotonic() - getattr(ctx, "started", time.monotonic()),
            status=status,
        )

    async def failed(
        _s: aiohttp.ClientSession, ctx: Any, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        health.record(
            network,
            params.url.host or "",
            outcome_of_error(params.exception),
            latency_s=time.monotonic() - getattr(ctx, "started", time.monotonic()),
            detail=type(params.exception).__name__,
        )

    trace.on_request_start.append(started)
    trace.on_request_end.append(ended)
    trace.on_request_exception.append(failed)
    return trace
