"""Fault injection against another network's stand-in: what a channel sees, message by message."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.testing import FakeClock, RecordingChat
from tests.conftest import StartBot
from tests.fakes.x_server import XServer, plugin_config, serving
from tests.test_outage import _fail_polls, notices


@pytest_asyncio.fixture
async def x_server() -> AsyncIterator[XServer]:
    async with serving() as server:
        yield server


async def test_x_answering_503_is_announced_once_and_caught_up_after(
    start_bot: StartBot, x_server: XServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for option, value in plugin_config(x_server).items():
        monkeypatch.setenv(f"STARLING_X__{option.upper()}", str(value))
    clock = FakeClock()
    chat = RecordingChat()
    bot = await start_bot(chat, clock=clock)
    assert "as #1" in await bot.say("/follow x @Twitter")
    await bot.poll_all()

    x_server.fail("GET", "/2/users/", 503, times=50)
    await _fail_polls(bot, 3)
    announced = notices(chat, "general")
    assert len(announced) == 1
    assert "(x) is not answering since 14:02 UTC (1 follow here affected)" in announced[0]
    assert "503" in announced[0]

    for n in range(3):
        x_server.tweet("Twitter", f"Said during the outage {n}")
    clock.advance(minutes=30)
    await _fail_polls(bot, 2)
    await bot.app.outages.refresh()  # the periodic update (every outage_update_s)
    assert len(notices(chat, "general")) == 1, "still one message, edited in place"
    assert "30 min so far" in notices(chat, "general")[0]

    x_server._faults.clear()  # X answers again: the fake keeps its faults in a list
    await _fail_polls(bot, 2)
    final = notices(chat, "general")
    assert len(final) == 1
    assert "is back: resolved after 30 min; 3 posts caught up." in final[0]
    texts = [s.message.text for s in chat.sent if not s.message.title.startswith("Outage")]
    assert sorted(texts) == [f"Said during the outage {n}" for n in range(3)]
