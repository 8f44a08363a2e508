"""Errors that cross the plugin boundary.

`UserError` carries a one-line answer for chat. `UpstreamError` carries a classified
outcome for the health record, so the outage work can tell a timeout from a 503.
"""

from __future__ import annotations

import enum
from collections.abc import Collection


class Outcome(enum.StrEnum):
    """How one upstream request ended; the health record counts these per host."""

    OK = "ok"
    NOT_MODIFIED = "not_modified"
    TIMEOUT = "timeout"
    REFUSED = "refused"
    DNS = "dns"
    TLS = "tls"
    HTTP_4XX = "http_4xx"
    HTTP_5XX = "http_5xx"
    RATE_LIMITED = "rate_limited"
    AUTH = "auth"
    PARSE = "parse"
    TOO_LARGE = "too_large"
    BLOCKED = "blocked"
    STREAM_DROPPED = "stream_dropped"
    SKIPPED = "skipped"  # not asked: a configured budget is spent; not about the host

    @classmethod
    def for_status(cls, status: int, *, auth: Collection[int] = (401, 403)) -> Outcome:
        """How an HTTP answer counts in the health record, the same for every plugin.

        `auth` lets a platform say which statuses mean "credentials refused" (Discord's
        403 is one channel's permissions, not the token).
        """
        if status == 304:
            return cls.NOT_MODIFIED
        if status < 400:
            return cls.OK
        if status == 429:
            return cls.RATE_LIMITED
        if status in auth:
            return cls.AUTH
        return cls.HTTP_5XX if status >= 500 else cls.HTTP_4XX

    @property
    def is_failure(self) -> bool:
        return self not in (Outcome.OK, Outcome.NOT_MODIFIED)

    @property
    def is_outage_signal(self) -> bool:
        """Failures that say the service is unwell, not that one request was wrong.

        A 404 for one feed, a parse error or a blocked address is about that
        resource; timeouts, refusals, 5xx, 429 storms, dropped streams and rejected
        credentials are about the service.
        """
        return self in _OUTAGE_SIGNALS


_OUTAGE_SIGNALS = frozenset(
    {
        Outcome.TIMEOUT,
        Outcome.REFUSED,
        Outcome.DNS,
        Outcome.TLS,
        Outcome.HTTP_5XX,
        Outcome.RATE_LIMITED,
        Outcome.AUTH,
        Outcome.STREAM_DROPPED,
    }
)


class UserError(Exception):
    """Bad input from a chat member; `str(err)` is the one-line answer shown to them."""


class UpstreamError(Exception):
    """An upstream request failed; `outcome` classifies it for the health record."""

    def __init__(
        self,
        outcome: Outcome,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        error: str = "",
    ) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.status = status
        self.retry_after_s = retry_after_s
        # The server's own error name or text (`ExpiredToken`, …): untrusted, for logic.
        self.error = error


class ChatError(Exception):
    """A chat platform refused a message.

    `permanent` means retrying cannot help (channel deleted, bot removed): the
    subscription is paused instead of retried forever.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        retry_after_s: float | None = None,
        outcome: Outcome | None = None,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after_s = retry_after_s
        # How the platform failed, for the health record; guessed when not given.
        self.outcome = outcome or (
            Outcome.HTTP_4XX
            if permanent
            else Outcome.RATE_LIMITED
            if retry_after_s is not None
            else Outcome.HTTP_5XX
        )
