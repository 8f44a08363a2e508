"""Mastodon's rate-limit headers, read so Starling stops *before* the server says 429.

Mastodon answers every API call with `X-RateLimit-Limit`, `X-RateLimit-Remaining`
and `X-RateLimit-Reset` (an ISO-8601 time). When fewer than `reserve` calls are
left, requests wait for the reset instead of spending the last ones; a 429 blocks
until its reset.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

MAX_WAIT_S = 3600.0
DEFAULT_429_WAIT_S = 60.0  # a 429 without a usable reset time


def parse_reset(value: str | None, now: datetime) -> float | None:
    """Seconds until an `X-RateLimit-Reset` time (ISO-8601) or a `Retry-After` delay."""
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.replace(".", "", 1).isdigit():
        return min(float(text), MAX_WAIT_S)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, min((when - now).total_seconds(), MAX_WAIT_S))


class RateLimiter:
    """Per instance and token: how long requests must hold back, if at all."""

    def __init__(self, reserve: int) -> None:
        self._reserve = reserve
        self._blocked_until: datetime | None = None
        self.remaining: int | None = None
        self.limit: int | None = None

    def wait_s(self, now: datetime) -> float:
        """Seconds to hold back before the next request (0 when free to go)."""
        if self._blocked_until is None:
            return 0.0
        wait = (self._blocked_until - now).total_seconds()
        if wait <= 0:
            self._blocked_until = None
            return 0.0
        return wait

    def update(self, headers: Mapping[str, str], now: datetime, *, status: int) -> float | None:
        """Read a response's headers; returns how long to wait after a 429, else None."""
        reset_s = parse_reset(headers.get("x-ratelimit-reset"), now)
        remaining = _int(headers.get("x-ratelimit-remaining"))
        self.limit = _int(headers.get("x-ratelimit-limit")) or self.limit
        if remaining is not None:
            self.remaining = remaining
        if status == 429:
            wait = parse_reset(headers.get("retry-after"), now)
            wait = max(wait or 0.0, reset_s or 0.0) or DEFAULT_429_WAIT_S
            self._block(now, wait)
            return wait
        if remaining is not None and remaining <= self._reserve and reset_s:
            self._block(now, reset_s)
        return None

    def _block(self, now: datetime, seconds: float) -> None:
        until = now + timedelta(seconds=seconds)
        if self._blocked_until is None or until > self._blocked_until:
            self._blocked_until = until


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
