"""A chat backend for tests and benchmarks: the whole bot runs, nothing is mocked.

`RecordingChat` keeps every message it is sent, answers commands typed with
`say`, and can be told to fail, so tests assert what a channel would show.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.errors import ChatError
from bot.model import ChannelRef, RichMessage
from bot.protocols import CommandService, Invocation, Reply

PLATFORM = "test"


@dataclass(slots=True)
class Sent:
    channel: ChannelRef
    message: RichMessage
    key: str
    ref: str
    edits: list[RichMessage] = field(default_factory=list)


class RecordingChat:
    min_interval_s = 0.0

    def __init__(self, name: str = PLATFORM, *, min_interval_s: float = 0.0) -> None:
        self.name = name
        self.min_interval_s = min_interval_s
        self.sent: list[Sent] = []
        self.fail_with: ChatError | None = None
        self._by_key: dict[str, str] = {}
        self._handler: CommandService | None = None
        self._closed = asyncio.Event()
        self.arrived = asyncio.Condition()

    @property
    def ready(self) -> bool:
        """True once the bot is running this chat and commands can be typed."""
        return self._handler is not None

    def channel(self, name: str) -> ChannelRef:
        return ChannelRef(self.name, name, name)

    async def say(
        self, channel: str, line: str, *, user: str = "tester", roles: frozenset[str] = frozenset()
    ) -> Reply:
        """Type a slash command in `channel`, as a member (with `roles`) would."""
        if self._handler is None:
            raise RuntimeError("the bot is not running this chat yet")
        command, _, args = line.strip().partition(" ")
        return await self._handler.handle(
            Invocation(self.channel(channel), user, command, args.strip(), roles)
        )

    def in_channel(self, channel: str) -> list[Sent]:
        return [s for s in self.sent if s.channel.native_id == channel]

    async def wait_for(self, count: int, *, within_s: float = 10.0) -> list[Sent]:
        """Wait until at least `count` messages have been sent in all."""
        async with asyncio.timeout(within_s), self.arrived:
            await self.arrived.wait_for(lambda: len(self.sent) >= count)
        return self.sent

    async def run(self, commands: CommandService) -> None:
        self._closed.clear()  # the same chat may serve a restarted bot
        self._handler = commands
        await self._closed.wait()

    async def send(self, channel: ChannelRef, message: RichMessage, key: str) -> str:
        if self.fail_with is not None:
            raise self.fail_with
        ref = f"{channel.native_id}:{len(self.sent) + 1}"
        self.sent.append(Sent(channel, message, key, ref))
        self._by_key[key] = ref
        async with self.arrived:
            self.arrived.notify_all()
        return ref

    async def edit(self, channel: ChannelRef, message_ref: str, message: RichMessage) -> None:
        for sent in self.sent:
            if sent.ref == message_ref:
                sent.edits.append(message)

    async def find_sent(self, channel: ChannelRef, key: str) -> str | None:
        return self._by_key.get(key)

    async def aclose(self) -> None:
        self._handler = None
        self._closed.set()


class FakeClock:
    """Wall-clock time that tests move forward, so an hours-long outage takes seconds.

    `monotonic` and `sleep` stay real: the scheduler and pacing keep working.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2026, 11, 23, 14, 2, tzinfo=UTC)
        self._offset = timedelta()
        self._real_start = time.monotonic()

    def advance(self, **delta: float) -> None:
        self._offset += timedelta(**delta)

    def now(self) -> datetime:
        return self._start + self._offset + timedelta(seconds=time.monotonic() - self._real_start)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
