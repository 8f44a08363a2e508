"""End to end: the real CLI in a subprocess, console chat, X plugin against the fake X API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.fakes.x_server import BEARER, XServer, serving
from tests.test_e2e_cli import Console

pytestmark = pytest.mark.slow


@pytest_asyncio.fixture
async def x_server() -> AsyncIterator[XServer]:
    async with serving() as server:
        yield server


async def test_a_followed_account_s_new_post_appears_once_in_the_console(
    tmp_path: Path, x_server: XServer
) -> None:
    console = await Console.start(
        tmp_path,
        STARLING_X__API_URL=x_server.url,
        STARLING_X__BEARER_TOKEN=BEARER,
        STARLING_X__MIN_INTERVAL_S="0",
        STARLING_ALLOW_PRIVATE_ADDRESSES="true",
    )
    await console.type("/follow x @Twitter --every 0.3s")
    await console.expect("Following @Twitter on x as #1")
    x_server.tweet(
        "Twitter",
        "Fresh from the fake https://t.co/e2e",
        links={"https://t.co/e2e": "https://example.com/e2e"},
    )
    await console.expect("\nFresh from the fake https://example.com/e2e\n")
    x_server.tweet("Twitter", "And a second one")
    await console.expect("\nAnd a second one\n")
    await console.type("/status")
    await console.expect("daily reads used")
    assert await console.finish() == 0
    assert console.output.count("Fresh from the fake") == 1
    assert console.output.count("And a second one") == 1
    assert "whoa, it works" not in console.output, "the recorded timeline is the baseline"
    assert BEARER not in console.output
    timelines = x_server.requests_to("GET", "/2/users/783214/tweets")
    assert all(r["headers"]["Authorization"] == f"Bearer {BEARER}" for r in timelines)
