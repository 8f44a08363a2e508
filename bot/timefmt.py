"""How times and durations read in chat: one format everywhere."""

from __future__ import annotations

from datetime import UTC, datetime


def hhmm(epoch: float) -> str:
    """A wall-clock time in UTC, e.g. `14:02 UTC` (teams span time zones)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M UTC")


def duration(seconds: float) -> str:
    """`42 min`, `3 h 5 min`: rounded to minutes, never less than one."""
    minutes = max(1, round(seconds / 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"
