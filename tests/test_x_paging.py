"""Paging between two polls: a burst larger than `max_results` arrives whole.

Runs the real plugin against the fake X API, which pages with `meta.next_token`
the way X does (newest first). Every page is a read, counted against the daily cap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.health import HealthBook
from bot.model import Target, TargetKind
from bot.protocols import PluginContext
from plugins.x import XNetwork, create
from tests.conftest import StartBot
from tests.fakes.x_server import ShiftedClock, XServer, plugin_config, serving
from tests.test_x_relay import start_with_x

TIMELINE = "/2/users/783214/tweets"


@pytest_asyncio.fixture
async def x_server() -> AsyncIterator[XServer]:
    async with serving() as server:
        yield server


@pytest_asyncio.fixture
async def nets(x_server: XServer, tmp_path: Path) -> AsyncIterator[list[XNetwork]]:
    made: list[XNetwork] = []
    yield made
    for net in made:
        await net.aclose()


def make(x_server: XServer, tmp_path: Path, nets: list[XNetwork], **options: Any) -> XNetwork:
    clock = ShiftedClock()
    config = plugin_config(x_server, max_results=10, **options)
    net = create(PluginContext("x", config, HealthBook(clock), clock, True, str(tmp_path)))
    nets.append(net)
    return net


async def baseline(net: XNetwork, kind: TargetKind, query: str) -> tuple[Target, str]:
    assert net.source is not None
    target = await net.source.resolve(kind, query)
    first = await net.source.fetch(target, None)
    assert first.cursor
    return target, first.cursor


def timeline_gets(server: XServer, path: str = TIMELINE) -> list[dict[str, Any]]:
    return [r for r in server.requests if r["method"] == "GET" and r["path"] == path]


async def test_a_burst_bigger_than_one_page_arrives_whole(
    x_server: XServer, tmp_path: Path, nets: list[XNetwork]
) -> None:
    net = make(x_server, tmp_path, nets)
    target, cursor = await baseline(net, TargetKind.ACCOUNT, "@Twitter")
    burst = [x_server.tweet("Twitter", f"Post number {n}") for n in range(25)]
    before = len(timeline_gets(x_server))
    assert net.source is not None
    result = await net.source.fetch(target, cursor)

    assert sorted(p.text for p in result.posts) == sorted(t["text"] for t in burst)
    assert result.cursor == burst[-1]["id"]
    pages = timeline_gets(x_server)[before:]
    assert len(pages) == 3, "25 posts at 10 per page"
    assert "pagination_token" not in pages[0]["query"]
    assert all(p["query"]["since_id"] == cursor for p in pages)
    assert all(p["query"].get("pagination_token") for p in pages[1:])
    assert net.api.budget.reads == 2 + 3, "lookup, baseline, three pages"

    quiet = await net.source.fetch(target, result.cursor)
    assert quiet.posts == []
    assert len(timeline_gets(x_server)) == before + 4, "a quiet poll is one read"


async def test_the_page_cap_bounds_one_poll(
    x_server: XServer, tmp_path: Path, nets: list[XNetwork]
) -> None:
    net = make(x_server, tmp_path, nets, max_pages=2)
    target, cursor = await baseline(net, TargetKind.ACCOUNT, "@Twitter")
    burst = [x_server.tweet("Twitter", f"Post number {n}") for n in range(25)]
    before = len(timeline_gets(x_server))
    assert net.source is not None
    result = await net.source.fetch(target, cursor)
    assert len(timeline_gets(x_server)) == before + 2
    assert sorted(p.text for p in result.posts) == sorted(t["text"] for t in burst[5:])
    assert result.cursor == burst[-1]["id"], "the oldest of the burst are skipped, not refetched"


async def test_paging_stops_at_the_daily_read_cap(
    x_server: XServer, tmp_path: Path, nets: list[XNetwork]
) -> None:
    net = make(x_server, tmp_path, nets, max_reads_per_day=4)
    target, cursor = await baseline(net, TargetKind.ACCOUNT, "@Twitter")
    burst = [x_server.tweet("Twitter", f"Post number {n}") for n in range(25)]
    assert net.source is not None
    result = await net.source.fetch(target, cursor)
    assert net.api.budget.reads == 4, "never beyond the cap"
    assert sorted(p.text for p in result.posts) == sorted(t["text"] for t in burst[5:])
    assert any("daily read cap reached" in line for line in net.status_lines())


async def test_a_search_pages_with_next_token(
    x_server: XServer, tmp_path: Path, nets: list[XNetwork]
) -> None:
    net = make(x_server, tmp_path, nets)
    x_server.tweet("Twitter", "the first starling of the year")
    target, cursor = await baseline(net, TargetKind.SEARCH, "starling")
    burst = [x_server.tweet("Twitter", f"starling sighting {n}") for n in range(12)]
    assert net.source is not None
    result = await net.source.fetch(target, cursor)
    assert sorted(p.text for p in result.posts) == sorted(t["text"] for t in burst)
    pages = timeline_gets(x_server, "/2/tweets/search/recent")[-2:]
    assert "next_token" not in pages[0]["query"]
    assert pages[1]["query"]["next_token"]


async def test_every_post_of_a_burst_reaches_chat_once(
    start_bot: StartBot, x_server: XServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = await start_with_x(start_bot, x_server, monkeypatch, max_results=10)
    assert (await bot.say("/follow x @Twitter")).startswith("Following @Twitter on x as #1")
    await bot.poll_all()
    for n in range(15):
        x_server.tweet("Twitter", f"Burst post {n}")
    await bot.poll_all()
    await bot.poll_all()
    assert [s.message.text for s in bot.chat.sent] == [f"Burst post {n}" for n in range(15)]
