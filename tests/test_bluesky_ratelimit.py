"""Bluesky's 429 with `ratelimit-reset`, through the real plugin and a local HTTP server.

The dev network has no rate limits, so a small aiohttp server answers the way
Bluesky's PDS and AppView do when a limit is used up: 429, the XRPC error
`RateLimitExceeded` and the `ratelimit-*` headers (reset in epoch seconds).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web

from bot.clock import SystemClock
from bot.errors import Outcome, UpstreamError
from bot.health import HealthBook
from bot.model import Target, TargetKind
from bot.protocols import Draft, PluginContext
from plugins.bluesky import BlueskyNetwork, create

DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"


class Limited:
    """Answers every XRPC call with 429 and the headers given by the test."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.calls: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.calls.append(request.path.removeprefix("/xrpc/"))
        return web.json_response(
            {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
            status=429,
            headers=self.headers,
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest_asyncio.fixture
async def limited() -> AsyncIterator[Limited]:
    server = Limited()
    await server.start()
    yield server
    await server.stop()


def _network(server: Limited, health: HealthBook, data_dir: Path) -> BlueskyNetwork:
    config = {
        "service": server.url,
        "appview": server.url,
        "jetstream": "ws://127.0.0.1:9",
        "handle": "alice.test",
        "app_password": "app-pass-word",
        "persist_session": "false",
    }
    return create(PluginContext("bluesky", config, health, SystemClock(), True, str(data_dir)))


def _policy(reset: int) -> dict[str, str]:
    return {
        "ratelimit-limit": "3000",
        "ratelimit-remaining": "0",
        "ratelimit-reset": str(reset),
        "ratelimit-policy": "3000;w=300",
    }


@pytest.mark.parametrize(
    ("reset_in", "low", "high"),
    [
        (120, 110.0, 121.0),
        (None, 30.0, 30.0),  # no ratelimit-reset: Retry-After: 30
        (-10, 0.0, 0.0),  # a reset already past: no wait
        (10 * 86400, 86400.0, 86400.0),  # capped at a day
    ],
)
async def test_a_429_on_polling_waits_until_the_reset(
    limited: Limited, tmp_path: Path, reset_in: int | None, low: float, high: float
) -> None:
    limited.headers = (
        {"retry-after": "30"} if reset_in is None else _policy(int(time.time()) + reset_in)
    )
    health = HealthBook(SystemClock())
    network = _network(limited, health, tmp_path)
    assert network.source is not None
    target = Target("bluesky", TargetKind.ACCOUNT, DID, "@alice.test")
    with pytest.raises(UpstreamError) as err:
        await network.source.fetch(target, None)
    await network.aclose()
    assert err.value.outcome is Outcome.RATE_LIMITED
    assert err.value.status == 429
    assert err.value.retry_after_s is not None
    assert low <= err.value.retry_after_s <= high
    host = health.hosts[("bluesky", limited.url.removeprefix("http://"))]
    assert host.last_outcome is Outcome.RATE_LIMITED
    assert host.last_detail == (
        f"{limited.url.removeprefix('http://')} refused app.bsky.feed.getAuthorFeed: "
        "RateLimitExceeded (Rate Limit Exceeded)"
    )
    assert limited.calls == ["app.bsky.feed.getAuthorFeed"]


async def test_a_rate_limited_login_is_not_retried_before_the_reset(
    limited: Limited, tmp_path: Path
) -> None:
    limited.headers = _policy(int(time.time()) + 300)
    network = _network(limited, HealthBook(SystemClock()), tmp_path)
    assert network.publisher is not None
    with pytest.raises(UpstreamError) as first:
        await network.publisher.publish(Draft("hello"), "starling:limited:1")
    assert first.value.outcome is Outcome.RATE_LIMITED
    with pytest.raises(UpstreamError) as second:
        await network.publisher.publish(Draft("hello"), "starling:limited:1")
    await network.aclose()
    assert second.value.outcome is Outcome.RATE_LIMITED
    assert second.value.retry_after_s is not None
    assert 280 < second.value.retry_after_s <= 300
    assert "tries again in" in str(second.value)
    assert limited.calls == ["com.atproto.server.createSession"], "one login, not two"
