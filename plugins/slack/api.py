"""Every Slack Web API call goes through here: timed, classified, reported to health.

Slack answers most failures with HTTP 200 and `{"ok": false, "error": …}`; those
codes are sorted into "retrying cannot help" (the channel is gone, the token is
revoked) and "try again later", so the dispatcher pauses or retries correctly.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.errors import Outcome
from bot.protocols import HealthRecorder

HEALTH_NETWORK = "slack"
DEFAULT_RETRY_AFTER_S = 30.0

# Errors after which the same request can never succeed; the message is for /list.
PERMANENT: Mapping[str, str] = {
    "channel_not_found": "the Slack channel was deleted or Starling cannot see it",
    "is_archived": "the Slack channel is archived",
    "not_in_channel": (
        "Starling is not a member of this Slack channel; /invite it, "
        "then /unfollow and /follow again"
    ),
    "account_inactive": "Starling's Slack bot user is deactivated",
    "invalid_auth": "Slack rejected the bot token; check [slack] bot_token",
    "not_authed": "no Slack bot token was sent; check [slack] bot_token",
    "token_revoked": "the Slack bot token was revoked; reinstall the app and update bot_token",
    "token_expired": "the Slack bot token expired; update [slack] bot_token",
    "missing_scope": "the Slack app lacks a permission scope",
    "not_allowed_token_type": "the Slack token is of the wrong type for this call",
    "restricted_action": "posting in this Slack channel is restricted by an admin",
    "team_access_not_granted": "the Slack app has no access to this workspace",
    "ekm_access_denied": "the Slack workspace's key management denied access",
}
AUTH_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "missing_scope",
        "not_allowed_token_type",
    }
)
SERVER_ERRORS = frozenset(
    {"fatal_error", "internal_error", "service_unavailable", "request_timeout"}
)
# The bot token of the workspace being served (multi-workspace OAuth). Task-local, so
# a send to one workspace and a command from another never borrow each other's token.
_acting_token: ContextVar[str] = ContextVar("slack_acting_token", default="")


def act_for_this_request(token: str | None) -> None:
    """From here on in this task (one request to Starling's HTTP endpoint), use `token`."""
    _acting_token.set(token or "")


@contextmanager
def acting_as(token: str | None) -> Iterator[None]:
    """Within this block, calls without an explicit token use `token`."""
    reset = _acting_token.set(token or "")
    try:
        yield
    finally:
        _acting_token.reset(reset)


class SlackFailure(Exception):
    """One failed call, classified; `uncertain` means Slack may have acted anyway."""

    def __init__(
        self,
        method: str,
        error: str,
        outcome: Outcome,
        *,
        permanent: bool = False,
        retry_after_s: float | None = None,
        uncertain: bool = False,
        needed: str = "",
    ) -> None:
        super().__init__(method, error)
        self.method = method
        self.error = error
        self.outcome = outcome
        self.permanent = permanent
        self.retry_after_s = retry_after_s
        self.uncertain = uncertain
        self.needed = needed

    def __str__(self) -> str:
        if self.error in PERMANENT:
            text = PERMANENT[self.error]
            if self.error == "missing_scope" and self.needed:
                text += f" ({self.needed}); add it under OAuth & Permissions and reinstall"
            return text
        if self.outcome is Outcome.RATE_LIMITED:
            return f"Slack rate limit on {self.method}; retrying in {self.retry_after_s:.0f} s"
        return f"Slack {self.method} failed: {self.error}"


def _retry_after(headers: Mapping[str, str] | None) -> float:
    try:
        value = float((headers or {}).get("Retry-After", ""))
    except ValueError:
        return DEFAULT_RETRY_AFTER_S
    return value if math.isfinite(value) and value >= 0 else DEFAULT_RETRY_AFTER_S


class SlackApi:
    """A small typed front for `AsyncWebClient` sharing one aiohttp session."""

    def __init__(self, token: str, base_url: str, timeout_s: float, health: HealthRecorder) -> None:
        self._token = token
        self.base_url = base_url
        self._timeout_s = timeout_s
        self._health = health
        self.host = urlsplit(base_url).hostname or "slack.com"
        self._session: aiohttp.ClientSession | None = None
        self._client: AsyncWebClient | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout_s)
            )
            self._client = None
        return self._session

    @property
    def client(self) -> AsyncWebClient:
        """The web client Bolt and the Socket Mode handler use too (created in a running loop)."""
        session = self.session()
        if self._client is None:
            self._client = AsyncWebClient(
                token=self._token,
                base_url=self.base_url,
                timeout=max(1, math.ceil(self._timeout_s)),
                session=session,
                # A silent retry of chat.postMessage could post twice; Starling retries itself.
                retry_handlers=[],
            )
        return self._client

    async def call(
        self,
        method: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        """POST (JSON body) or GET (`params`) one Web API method; raise `SlackFailure`."""
        client = self.client
        token = token or _acting_token.get()
        headers = {"Authorization": f"Bearer {token}"} if token else None
        verb = "GET" if params is not None else "POST"
        started = time.monotonic()
        try:
            response = await client.api_call(
                method, http_verb=verb, params=params, json=json, headers=headers
            )
        except SlackApiError as err:
            raise self._classify(method, err, time.monotonic() - started) from None
        except TimeoutError:
            self._record(Outcome.TIMEOUT, started, None, method)
            raise SlackFailure(method, "timeout", Outcome.TIMEOUT, uncertain=True) from None
        except aiohttp.ClientConnectorError as err:
            # Never connected: Slack cannot have acted on it.
            self._record(Outcome.REFUSED, started, None, str(err))
            raise SlackFailure(method, "connection refused", Outcome.REFUSED) from None
        except aiohttp.ClientError as err:
            self._record(Outcome.REFUSED, started, None, type(err).__name__)
            raise SlackFailure(
                method, type(err).__name__, Outcome.REFUSED, uncertain=True
            ) from None
        self._record(Outcome.OK, started, response.status_code, "")
        data = response.data
        return data if isinstance(data, dict) else {}

    async def post_response(self, url: str, body: dict[str, Any]) -> bool:
        """Answer a slash command through its response_url; False if Slack refused it."""
        started = time.monotonic()
        host = urlsplit(url).hostname or "hooks.slack.com"
        hook = AsyncWebhookClient(
            url, timeout=max(1, math.ceil(self._timeout_s)), session=self.session()
        )
        try:
            response = await hook.send_dict(body)
        except TimeoutError:
            self._health.record(
                HEALTH_NETWORK, host, Outcome.TIMEOUT, latency_s=time.monotonic() - started
            )
            return False
        except aiohttp.ClientError as err:
            self._health.record(
                HEALTH_NETWORK,
                host,
                Outcome.REFUSED,
                latency_s=time.monotonic() - started,
                detail=type(err).__name__,
            )
            return False
        status = response.status_code
        outcome = (
            Outcome.OK
            if status == 200
            else Outcome.RATE_LIMITED
            if status == 429
            else Outcome.HTTP_5XX
            if status >= 500
            else Outcome.HTTP_4XX
        )
        self._health.record(
            HEALTH_NETWORK, host, outcome, latency_s=time.monotonic() - started, status=status
        )
        return status == 200

    def record_stream(self, host: str, outcome: Outcome, detail: str = "") -> None:
        """Socket Mode connection events, so /status can tell a dropped link."""
        self._health.record(HEALTH_NETWORK, host, outcome, detail=detail[:200])

    def _classify(self, method: str, err: SlackApiError, latency_s: float) -> SlackFailure:
        response = err.response
        status: int | None = getattr(response, "status_code", None) or getattr(
            response, "status", None
        )
        data = getattr(response, "data", None)
        body = data if isinstance(data, dict) else {}
        code = str(body.get("error") or "")
        headers = getattr(response, "headers", None)
        if status == 429 or code in ("ratelimited", "rate_limited"):
            wait = _retry_after(headers)
            self._record(Outcome.RATE_LIMITED, None, status, code, latency_s)
            return SlackFailure(
                method, code or "ratelimited", Outcome.RATE_LIMITED, retry_after_s=wait
            )
        if status is not None and status >= 500:
            self._record(Outcome.HTTP_5XX, None, status, code, latency_s)
            return SlackFailure(method, code or f"HTTP {status}", Outcome.HTTP_5XX, uncertain=True)
        if not code:
            self._record(Outcome.PARSE, None, status, "unreadable answer", latency_s)
            return SlackFailure(method, f"unreadable answer (HTTP {status})", Outcome.PARSE)
        if code in SERVER_ERRORS:
            self._record(Outcome.HTTP_5XX, None, status, code, latency_s)
            return SlackFailure(method, code, Outcome.HTTP_5XX, uncertain=True)
        outcome = Outcome.AUTH if code in AUTH_ERRORS else Outcome.HTTP_4XX
        self._record(outcome, None, status, code, latency_s)
        return SlackFailure(
            method,
            code,
            outcome,
            permanent=code in PERMANENT,
            needed=str(body.get("needed") or ""),
        )

    def _record(
        self,
        outcome: Outcome,
        started: float | None,
        status: int | None,
        detail: str,
        latency_s: float | None = None,
    ) -> None:
        if latency_s is None:
            latency_s = time.monotonic() - started if started is not None else 0.0
        self._health.record(
            HEALTH_NETWORK, self.host, outcome, latency_s=latency_s, status=status, detail=detail
        )

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
        self._client = None
        await asyncio.sleep(0)
