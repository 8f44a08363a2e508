"""The real CLI with the console chat, following an account on the local Mastodon.

Configured only through the environment (`STARLING_MASTODON__*`), as a container
would be: `/follow mastodon @user@instance`, then a new status shows up once and
the statuses that existed before the follow never do.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.fakes.mastodon_server import MastodonFake, plugin_env
from tests.test_e2e_cli import Console

pytestmark = pytest.mark.slow


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[MastodonFake]:
    async with MastodonFake() as server:
        yield server


@pytest.mark.parametrize("token", [False, True], ids=["polling", "streaming"])
async def test_follow_then_a_new_status_appears_once(
    tmp_path: Path, fake: MastodonFake, token: bool
) -> None:
    console = await Console.start(tmp_path, **plugin_env(fake, token=token))
    every = "0.3s" if not token else "1h"  # with a token only the stream can deliver it
    await console.type(f"/follow mastodon @mastodonpy_test@mastodon.example --every {every}")
    await console.expect("Following @mastodonpy_test@mastodon.example on mastodon as #1")
    if token:
        await fake.wait_subscribed("public:local")
    fake.post("mastodonpy_test", "Fresh from the local Mastodon")
    await console.expect("\nFresh from the local Mastodon\n")
    await console.type("/follow mastodon @nobody@mastodon.example")
    await console.expect("» /follow: no account @nobody@mastodon.example on mastodon.example")
    assert await console.finish() == 0

    assert console.output.count("Fresh from the local Mastodon") == 1
    assert "John Lennon" in console.output
    assert "Toot number 9!" not in console.output  # it was there before the follow
    assert "Traceback" not in console.output
