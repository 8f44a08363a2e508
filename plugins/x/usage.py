"""The daily read budget: X bills every read, so Starling counts them and stops at a cap.

The count lives in a small JSON file in the data directory, so a restart does not
hand out a fresh budget. A read is counted *before* its request is sent: a crash
mid-request can only over-count, never let the cap be exceeded.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.clock import Clock

log = logging.getLogger(__name__)


class CapReached(Exception):
    """The day's reads are used up; `retry_after_s` is the time to the next UTC midnight."""

    def __init__(self, cap: int, retry_after_s: float) -> None:
        super().__init__(f"the daily cap of {cap} X reads is used up")
        self.cap = cap
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class _Day:
    day: str = ""
    reads: int = 0
    posts: int = 0


class ReadBudget:
    """Reads (requests) and posts received per UTC day, persisted in `path` when given."""

    def __init__(self, cap: int, clock: Clock, path: Path | None) -> None:
        self.cap = cap
        self._clock = clock
        self._path = path
        self._state: _Day | None = None

    def _today(self) -> _Day:
        if self._state is None:
            self._state = self._load()
        today = _utc_now(self._clock).date().isoformat()
        if self._state.day != today:
            self._state = _Day(today)
        return self._state

    @property
    def reads(self) -> int:
        return self._today().reads

    @property
    def posts(self) -> int:
        return self._today().posts

    @property
    def exhausted(self) -> bool:
        return self.reads >= self.cap

    def seconds_to_reset(self) -> float:
        now = _utc_now(self._clock)
        midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return max(1.0, (midnight - now).total_seconds())

    def take(self) -> None:
        """Count one read, or raise `CapReached` without counting when none are left."""
        state = self._today()
        if state.reads >= self.cap:
            raise CapReached(self.cap, self.seconds_to_reset())
        state.reads += 1
        self._save(state)

    def add_posts(self, count: int) -> None:
        if count:
            state = self._today()
            state.posts += count
            self._save(state)

    def _load(self) -> _Day:
        if self._path is None or not self._path.exists():
            return _Day()
        try:
            raw = json.loads(self._path.read_text(encoding="utf-8"))
            return _Day(str(raw["day"]), int(raw["reads"]), int(raw.get("posts", 0)))
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("x: could not read %s; counting today's reads from zero", self._path)
            return _Day()

    def _save(self, state: _Day) -> None:
        if self._path is None:
            return
        data = json.dumps({"day": state.day, "reads": state.reads, "posts": state.posts})
        tmp = self._path.with_suffix(".tmp")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(data, encoding="utf-8")
            os.replace(tmp, self._path)
        except OSError as err:
            log.warning("x: could not save the read count to %s: %s", self._path, err)


def next_midnight_text(clock: Clock) -> str:
    """When the budget resets, for chat: tomorrow's date at 00:00 UTC."""
    tomorrow = _utc_now(clock).date() + timedelta(days=1)
    return datetime(tomorrow.year, tomorrow.month, tomorrow.day).strftime("%Y-%m-%d 00:00 UTC")


def _utc_now(clock: Clock) -> datetime:
    return clock.now().astimezone(UTC)
