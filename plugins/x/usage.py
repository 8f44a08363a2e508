"""The daily read budget: X bills every read, so Starling counts them and stops at a cap.

The count lives in the plugin's state in Starling's database (`ctx.state`, key
`reads`), so a restart does not hand out a fresh budget. Older releases kept it in
`<name>-reads.json` under the data directory; that file is imported once and then
renamed to `…json.imported`. A read is counted *before* its request is sent: a
crash mid-request can only over-count, never let the cap be exceeded.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.clock import Clock
from bot.pluginstate import PluginState, retire_legacy_file

log = logging.getLogger(__name__)
STATE_KEY = "reads"


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

    def to_json(self) -> str:
        return json.dumps({"day": self.day, "reads": self.reads, "posts": self.posts})


def _parse(text: str) -> _Day:
    raw = json.loads(text)
    return _Day(str(raw["day"]), int(raw["reads"]), int(raw.get("posts", 0)))


class ReadBudget:
    """Reads (requests) and posts received per UTC day, kept in the plugin's state."""

    def __init__(
        self, cap: int, clock: Clock, state: PluginState, legacy_path: Path | None = None
    ) -> None:
        self.cap = cap
        self._clock = clock
        self._store = state
        self._legacy = legacy_path
        self._state: _Day | None = None
        self._load_lock = asyncio.Lock()
        self._save_lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        """False until the first read after a start has loaded today's count."""
        return self._state is not None

    def _today(self) -> _Day:
        today = _utc_now(self._clock).date().isoformat()
        if self._state is None or self._state.day != today:
            self._state = _Day(today)
        return self._state

    @property
    def reads(self) -> int:
        return self._today().reads if self.loaded else 0

    @property
    def posts(self) -> int:
        return self._today().posts if self.loaded else 0

    @property
    def exhausted(self) -> bool:
        return self.reads >= self.cap

    def seconds_to_reset(self) -> float:
        now = _utc_now(self._clock)
        midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return max(1.0, (midnight - now).total_seconds())

    async def take(self) -> None:
        """Count one read, or raise `CapReached` without counting when none are left."""
        await self.load()
        state = self._today()
        if state.reads >= self.cap:
            raise CapReached(self.cap, self.seconds_to_reset())
        state.reads += 1
        await self._save()

    async def add_posts(self, count: int) -> None:
        if count:
            await self.load()
            self._today().posts += count
            await self._save()

    async def load(self) -> None:
        """Today's count from the state (once), importing the old JSON file if it is there."""
        if self._state is not None:
            return
        async with self._load_lock:
            if self._state is not None:
                return
            text = await self._store.get(STATE_KEY)
            imported = False
            if text is None:
                text, imported = self._read_legacy(), True
            try:
                day = _parse(text) if text else _Day()
            except (ValueError, KeyError, TypeError):
                log.warning("x: the stored read count is unreadable; counting from zero")
                day = _Day()
            self._state = day
            if imported and text:
                await self._save()
                self._retire_legacy()

    def _read_legacy(self) -> str:
        if self._legacy is None or not self._legacy.is_file():
            return ""
        try:
            return self._legacy.read_text(encoding="utf-8")
        except OSError as err:
            log.warning("x: could not read %s: %s", self._legacy, err)
            return ""

    def _retire_legacy(self) -> None:
        """Rename the imported file, so it is never imported over a newer count."""
        assert self._legacy is not None
        retire_legacy_file(self._legacy)

    async def _save(self) -> None:
        # Whoever holds the lock writes the newest count, so saves cannot land out of order.
        async with self._save_lock:
            if self._state is not None:
                await self._store.put(STATE_KEY, self._state.to_json())


def next_midnight_text(clock: Clock) -> str:
    """When the budget resets, for chat: tomorrow's date at 00:00 UTC."""
    tomorrow = _utc_now(clock).date() + timedelta(days=1)
    return datetime(tomorrow.year, tomorrow.month, tomorrow.day).strftime("%Y-%m-%d 00:00 UTC")


def _utc_now(clock: Clock) -> datetime:
    return clock.now().astimezone(UTC)
