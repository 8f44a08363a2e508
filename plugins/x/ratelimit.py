"""X's per-endpoint rate limits, read from every answer so Starling stops *before* a 429.

X sends `x-rate-limit-limit`, `x-rate-limit-remaining` and `x-rate-limit-reset`
(epoch seconds) with each answer, per endpoint and token. When `remaining` reaches
0 no request goes out until the reset. A 429 blocks until its reset, its
`Retry-After`, or a cautious default when it names neither. Posting also has
24-hour caps (`x-user-limit-24hour-*`, `x-app-limit-24hour-*`), honoured the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_429_WAIT_S = 60.0
MAX_WAIT_S = 26 * 3600.0


@dataclass(slots=True)
class Window:
    limit: int | None = None
    remaining: int | None = None
    reset_at: float | None = None  # epoch seconds
    blocked_until: float | None = None  # epoch seconds, set by a 429 or remaining == 0


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) < 16 else None


def _retry_after_s(value: str | None) -> float | None:
    seconds = _int(value)
    return float(seconds) if seconds is not None else None


class RateLimits:
    """One window per endpoint (`"GET /2/users/:id/tweets"`) and credential kind."""

    def __init__(self) -> None:
        self.windows: dict[str, Window] = {}

    def wait_s(self, endpoint: str, now: float) -> float:
        """Seconds to hold back before calling `endpoint` (0 when free to go)."""
        window = self.windows.get(endpoint)
        if window is None or window.blocked_until is None:
            return 0.0
        wait = window.blocked_until - now
        if wait <= 0:
            window.blocked_until = None
            return 0.0
        return min(wait, MAX_WAIT_S)

    def update(
        self, endpoint: str, headers: Mapping[str, str], status: int, now: float
    ) -> float | None:
        """Read one answer's headers; returns how long to wait after a 429 (else None)."""
        window = self.windows.setdefault(endpoint, Window())
        limit = _int(headers.get("x-rate-limit-limit"))
        remaining = _int(headers.get("x-rate-limit-remaining"))
        reset = _int(headers.get("x-rate-limit-reset"))
        if limit is not None:
            window.limit = limit
        if remaining is not None:
            window.remaining = remaining
        if reset is not None:
            window.reset_at = float(reset)
        until: float | None = None
        if remaining == 0 and reset is not None:
            until = float(reset)
        for prefix in ("x-user-limit-24hour", "x-app-limit-24hour"):
            if _int(headers.get(f"{prefix}-remaining")) == 0:
                day_reset = _int(headers.get(f"{prefix}-reset"))
                if day_reset is not None:
                    until = max(until or 0.0, float(day_reset))
        if status == 429 and (until is None or until <= now):
            # A 429 that names no future reset still must not be retried at once.
            retry_after = _retry_after_s(headers.get("retry-after"))
            until = now + (retry_after if retry_after is not None else DEFAULT_429_WAIT_S)
        if until is None or until <= now:
            return None
        window.blocked_until = min(until, now + MAX_WAIT_S)
        return window.blocked_until - now if status == 429 else None

    def blocked(self, now: float) -> dict[str, float]:
        """Endpoints that may not be called yet, with the epoch second they free up."""
        return {
            name: window.blocked_until
            for name, window in sorted(self.windows.items())
            if window.blocked_until is not None and window.blocked_until > now
        }
