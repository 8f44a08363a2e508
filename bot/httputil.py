"""Small HTTP helpers every plugin needs the same way."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus

MAX_RETRY_AFTER_S = 7 * 24 * 3600.0  # beyond a week a Retry-After is a mistake


def reason_phrase(status: int) -> str:
    """The standard reason phrase; a server's own text never reaches chat."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), capped."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        if len(value) > 9:
            return MAX_RETRY_AFTER_S
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, min(delta, MAX_RETRY_AFTER_S))
