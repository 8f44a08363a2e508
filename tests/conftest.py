"""Shared fixtures: a local feed server and a whole running Starling with a test chat."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.app import App
from bot.clock import Clock
from bot.config import load_settings
from bot.errors import UpstreamError
from bot.protocols import Network
from bot.testing import RecordingChat

pytest_plugins = ["tests.feedserver"]

REPO = Path(__file__).resolve().parents[1]


class RunningBot:
    """A Starling app running in this event loop, with a `RecordingChat` as its chat."""

    def __init__(self, app: App, chat: RecordingChat, task: asyncio.Task[None]) -> None:
        self.app = app
        self.chat = chat
        self.task = task

    async def say(self, line: str, channel: str = "general") -> str:
        return (await self.chat.say(channel, line)).text

    async def poll_all(self) -> None:
        """Poll every followed resource once and wait until what it admitted is delivered."""
        for state in list(self.app.scheduler.states.values()):
            await self.app.relay.poll(state)
        await self.app.dispatcher.drain()
        for state in list(self.app.scheduler.states.values()):
            if state.advance is not None:
                await asyncio.wait([state.advance])

    async def poll_all_tolerant(self) -> None:
        """Poll everything once, as the scheduler would, failures included."""
        for state in list(self.app.scheduler.states.values()):
            with contextlib.suppress(UpstreamError):
                await self.app.relay.poll(state)
        await self.app.dispatcher.drain()

    async def stop(self) -> None:
        self.app.stop()
        await asyncio.wait_for(self.task, 30)


StartBot = Callable[..., Awaitable[RunningBot]]


@pytest_asyncio.fixture
async def start_bot(tmp_path: Path) -> AsyncIterator[StartBot]:
    """Start Starling (feeds network, test chat, SQLite in tmp_path); stopped after the test."""
    running: list[RunningBot] = []

    async def start(
        chat: RecordingChat | None = None,
        extra_networks: dict[str, Network] | None = None,
        clock: Clock | None = None,
        extra_chats: list[RecordingChat] | None = None,
        **overrides: Any,
    ) -> RunningBot:
        options: dict[str, Any] = {
            "data_dir": tmp_path / "data",
            "allow_private_addresses": True,
            "min_interval_s": 0.1,
            "jitter": 0.0,
            "health_flush_s": 0.5,
            "shutdown_grace_s": 5.0,
        }
        options.update(overrides)
        settings = load_settings(**options)
        chat = chat or RecordingChat()
        app = await App.create(
            settings,
            chats={c.name: c for c in [chat, *(extra_chats or [])]},
            extra_networks=extra_networks,
            clock=clock,
        )
        task = asyncio.create_task(app.run())
        for _ in range(100):
            if chat.ready:
                break
            await asyncio.sleep(0.01)
        bot = RunningBot(app, chat, task)
        running.append(bot)
        return bot

    yield start
    for bot in running:
        if not bot.task.done():
            with contextlib.suppress(Exception):
                await bot.stop()


@pytest.fixture
def read_by_feedparser(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The documents the feed parser handed to feedparser, its slow fallback."""
    from plugins.feeds import parse as feeds_parse

    seen: list[bytes] = []
    real = feeds_parse._feedparser

    def spy(body: bytes, content_type: str, markup: Any = None) -> Any:
        seen.append(body)
        return real(body, content_type, markup)

    monkeypatch.setattr(feeds_parse, "_feedparser", spy)
    return seen
