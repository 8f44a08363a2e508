"""The one door to X's API v2: httpx, credentials, budget, rate limits and health.

Every request passes here, so every one is counted against the daily read cap
(reads only), held back while its endpoint's rate limit is used up, classified
when it fails and reported to the health record exactly once. Messages in the
errors are one line, safe to show in chat, and never contain a credential.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from datetime import UTC
from enum import Enum
from typing import Any

import httpx
from authlib.oauth1 import ClientAuth  # type: ignore[import-untyped]

from bot.clock import Clock
from bot.errors import Outcome, UpstreamError
from bot.httputil import reason_phrase
from bot.protocols import HealthRecorder
from bot.render import cap, defuse
from bot.timefmt import hhmm
from plugins.x.config import XSettings
from plugins.x.ratelimit import RateLimits
from plugins.x.usage import CapReached, ReadBudget, next_midnight_text

_PRINTABLE = re.compile(r"[\x00-\x1f\x7f]+")
DETAIL_LIMIT = 200


class Credential(Enum):
    """Which identity a request is made as; X keeps separate rate limits for each."""

    APP = "app"
    USER = "user"


class BearerAuth(httpx.Auth):
    """`Authorization: Bearer …`, for the app-only token and for OAuth 2.0 user tokens."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


class OAuth1Auth(httpx.Auth):
    """OAuth 1.0a user-context signing (HMAC-SHA1) by authlib, keeping JSON bodies intact.

    authlib's own httpx `OAuth1Auth` drops any body that is not form-encoded
    (authlib issue #543), and `POST /2/tweets` sends JSON. X signs JSON requests
    without their body, as RFC 5849 prescribes for non-form bodies, so the signature
    is computed by authlib over method, URL and query and only the header is added.
    """

    def __init__(self, consumer_key: str, consumer_secret: str, token: str, token_secret: str):
        self._client = ClientAuth(
            consumer_key, client_secret=consumer_secret, token=token, token_secret=token_secret
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        _, headers, _ = self._client.sign(request.method, str(request.url), {}, b"")
        request.headers["Authorization"] = headers["Authorization"]
        yield request


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]


def problem_detail(body: Mapping[str, Any]) -> str:
    """The most telling line of an X error body (`errors[].detail|message`, `detail`, `title`)."""
    errors = body.get("errors")
    if isinstance(errors, list):
        for error in errors:
            if isinstance(error, dict):
                text = error.get("detail") or error.get("message")
                if isinstance(text, str) and text.strip():
                    return _clean(text)
    for key in ("detail", "title", "reason"):
        text = body.get(key)
        if isinstance(text, str) and text.strip():
            return _clean(text)
    return ""


def _clean(text: str) -> str:
    """Upstream text for a chat line: one line, capped, mentions defused."""
    return defuse(cap(_PRINTABLE.sub(" ", text).strip(), DETAIL_LIMIT))


class XApi:
    """An httpx client for X with the budget, the rate limits and the health record."""

    def __init__(
        self,
        settings: XSettings,
        *,
        network: str,
        health: HealthRecorder,
        clock: Clock,
        budget: ReadBudget,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.network = network
        self.host = settings.host
        self.budget = budget
        self.limits = RateLimits()
        self._health = health
        self._clock = clock
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._cap_reported_on = ""
        self._app_auth = (
            BearerAuth(settings.bearer_token.get_secret_value()) if settings.bearer_token else None
        )
        self._user_auth: httpx.Auth | None = None
        if settings.has_oauth1:
            secrets = [getattr(settings, name).get_secret_value() for name in _OAUTH1_ORDER]
            self._user_auth = OAuth1Auth(*secrets)
        elif settings.user_token is not None:
            self._user_auth = BearerAuth(settings.user_token.get_secret_value())

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.settings.api_url,
                headers={"User-Agent": self.settings.user_agent, "Accept": "application/json"},
                timeout=httpx.Timeout(self.settings.timeout_s),
                follow_redirects=False,
                trust_env=False,
                transport=self._transport,
            )
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def now(self) -> float:
        return self._clock.now().timestamp()

    def read_credential(self) -> Credential:
        """Reads go out app-only when a bearer token is set, else as the posting user."""
        if self._app_auth is not None:
            return Credential.APP
        if self._user_auth is not None:
            return Credential.USER
        raise UpstreamError(
            Outcome.AUTH,
            "X is not configured: set STARLING_X__BEARER_TOKEN (the app's bearer token)",
        )

    async def request(
        self,
        method: str,
        endpoint: str,
        path: str,
        *,
        credential: Credential,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | None = None,
    ) -> Answer:
        """One API call; raises `UpstreamError` for anything but a 2xx JSON object.

        `endpoint` names the rate-limit bucket (`"GET /2/users/:id/tweets"`); GETs
        count against the daily read cap.
        """
        auth = self._app_auth if credential is Credential.APP else self._user_auth
        if auth is None:
            raise UpstreamError(
                Outcome.AUTH,
                "posting to X needs user credentials: set the four OAuth 1.0a keys "
                "or STARLING_X__USER_TOKEN",
            )
        bucket = self.check_limit(endpoint, credential)
        if method == "GET":
            await self._take_read()
        started = time.monotonic()
        try:
            response = await self._http().request(
                method, path, params=params, json=json_body, auth=auth
            )
        except httpx.TimeoutException:
            message = f"{self.host} did not answer within {self.settings.timeout_s:g} s"
            raise self._fail(Outcome.TIMEOUT, message, started) from None
        except httpx.ConnectError as exc:
            outcome, message = _connect_failure(self.host, exc)
            raise self._fail(outcome, message, started) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            message = f"{self.host} closed the connection before the answer was complete"
            raise self._fail(Outcome.STREAM_DROPPED, message, started) from None
        except httpx.DecodingError:
            message = f"{self.host} sent a body that could not be decoded"
            raise self._fail(Outcome.PARSE, message, started) from None
        except httpx.HTTPError as exc:
            message = f"the request to {self.host} failed ({type(exc).__name__})"
            raise self._fail(Outcome.REFUSED, message, started) from None
        retry_after = self.limits.update(bucket, response.headers, response.status_code, self.now())
        body = _json_object(response)
        status = response.status_code
        if 200 <= status < 300:
            if body is None:
                message = f"{self.host} answered {status} with something that is not JSON"
                raise self._fail(Outcome.PARSE, message, started, status)
            self._health.record(
                self.network,
                self.host,
                Outcome.OK,
                latency_s=time.monotonic() - started,
                status=status,
            )
            return Answer(status, body)
        raise self._status_error(status, body or {}, started, retry_after)

    def check_limit(self, endpoint: str, credential: Credential) -> str:
        """Raise, without any request, while `endpoint`'s rate limit is used up.

        Returns the rate-limit bucket: the endpoint as seen by this credential.
        """
        bucket = f"{endpoint} ({credential.value})"
        wait = self.limits.wait_s(bucket, self.now())
        if wait > 0:
            raise UpstreamError(
                Outcome.RATE_LIMITED,
                f"X's rate limit for {endpoint} is used up until {hhmm(self.now() + wait)}",
                retry_after_s=wait,
            )
        return bucket

    async def _take_read(self) -> None:
        try:
            await self.budget.take()
        except CapReached as cap_reached:
            message = (
                f"the daily cap of {cap_reached.cap} X reads is used up "
                f"(max_reads_per_day); reading resumes {next_midnight_text(self._clock)}"
            )
            today = self._clock.now().astimezone(UTC).date().isoformat()
            if self._cap_reported_on != today:
                # Once a day, so /status says why X went quiet; no request was made.
                self._cap_reported_on = today
                self._health.record(self.network, self.host, Outcome.SKIPPED, detail=message)
            # Skipped, not rate limited: X did nothing wrong, so no backoff and no outage.
            raise UpstreamError(
                Outcome.SKIPPED, message, retry_after_s=cap_reached.retry_after_s
            ) from None

    def _status_error(
        self, status: int, body: Mapping[str, Any], started: float, retry_after: float | None
    ) -> UpstreamError:
        detail = problem_detail(body)
        message = f"{self.host} answered {status} {reason_phrase(status)}".rstrip()
        # X refusing a repeated text is about this post, not about the credentials.
        duplicate = status == 403 and "duplicate content" in detail
        outcome = Outcome.for_status(status, auth=() if duplicate else (401, 403))
        if outcome is Outcome.RATE_LIMITED:
            wait = retry_after or 0.0
            message += f"; waiting until {hhmm(self.now() + wait)} before asking again"
        else:
            retry_after = None
        if detail:
            message += f": {detail}"
        return self._fail(outcome, message, started, status, retry_after)

    def _fail(
        self,
        outcome: Outcome,
        message: str,
        started: float,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> UpstreamError:
        self._health.record(
            self.network,
            self.host,
            outcome,
            latency_s=time.monotonic() - started,
            status=status,
            detail=message,
        )
        return UpstreamError(outcome, message, status=status, retry_after_s=retry_after_s)


_OAUTH1_ORDER = ("consumer_key", "consumer_secret", "access_token", "access_token_secret")


def _connect_failure(host: str, exc: httpx.ConnectError) -> tuple[Outcome, str]:
    """Classify a failed connect by the OS error underneath httpx's wrappers."""
    cause: BaseException | None = exc
    for _ in range(8):  # the chain is short; a bound keeps a cycle from hanging us
        if cause is None:
            break
        if isinstance(cause, socket.gaierror):
            return Outcome.DNS, f"{host} could not be found (DNS lookup failed)"
        if isinstance(cause, ssl.SSLError):
            return Outcome.TLS, f"the TLS handshake with {host} failed"
        if isinstance(cause, ConnectionRefusedError):
            return Outcome.REFUSED, f"{host} refused the connection"
        cause = cause.__cause__ or cause.__context__
    return Outcome.REFUSED, f"could not connect to {host}"


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None
