"""A repost streamed from Jetstream, its post fetched from a real Bluesky AppView.

Bob posts and Alice reposts it on the real PDS of @atproto/dev-env; the repost
reaches Starling as the Jetstream event its record makes (tests/fakes/jetstream.py),
and Starling fetches Bob's post from the real AppView (`app.bsky.feed.getPosts`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.atproto.devnet import Account, Devnet, devnet
from tests.conftest import StartBot
from tests.fakes.jetstream import EventLog, FakeJetstream, jetstream_hosts

pytestmark = pytest.mark.atproto
__all__ = ["devnet"]  # the session fixture, imported so pytest finds it here


@pytest_asyncio.fixture
async def jetstream() -> AsyncIterator[tuple[EventLog, FakeJetstream]]:
    async with jetstream_hosts(1) as (log, hosts):
        yield log, hosts[0]


async def _write(net: Devnet, who: Account, collection: str, record: dict[str, Any]) -> Any:
    """Create a record in `who`'s repo on the real PDS; its uri and cid."""
    async with httpx.AsyncClient(timeout=20) as client:
        session = await client.post(
            f"{net.pds}/xrpc/com.atproto.server.createSession",
            json={"identifier": who.handle, "password": who.password},
        )
        token = session.json()["accessJwt"]
        created = await client.post(
            f"{net.pds}/xrpc/com.atproto.repo.createRecord",
            json={"repo": who.did, "collection": collection, "record": record},
            headers={"Authorization": f"Bearer {token}"},
        )
        created.raise_for_status()
        return created.json()


async def _indexed(appview: str, uri: str, within_s: float = 20.0) -> None:
    """Wait until the AppView has taken in the post (it reads the PDS asynchronously)."""
    async with httpx.AsyncClient(timeout=10) as client, asyncio.timeout(within_s):
        while True:
            found = await client.get(f"{appview}/xrpc/app.bsky.feed.getPosts", params={"uris": uri})
            if found.status_code == 200 and found.json().get("posts"):
                return
            await asyncio.sleep(0.2)


async def test_a_streamed_repost_shows_the_post_from_the_real_appview(
    devnet: Devnet,
    start_bot: StartBot,
    jetstream: tuple[EventLog, FakeJetstream],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    appview = devnet.require_appview()
    log, host = jetstream
    alice, bob = devnet.accounts["alice"], devnet.accounts["bob"]
    monkeypatch.setenv("STARLING_BLUESKY__SERVICE", devnet.pds)
    monkeypatch.setenv("STARLING_BLUESKY__APPVIEW", appview)
    monkeypatch.setenv("STARLING_BLUESKY__JETSTREAM", host.url)
    bot = await start_bot()
    assert "as #1" in await bot.say("/follow bluesky @alice.test --every 1h")
    assert "as #2" in await bot.say("/follow bluesky @alice.test --every 1h --no-reposts", "quiet")
    async with asyncio.timeout(10):
        while not host.requests:
            await asyncio.sleep(0.01)

    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    post = {"$type": "app.bsky.feed.post", "text": "Bob's thought, worth passing on"}
    written = await _write(devnet, bob, "app.bsky.feed.post", {**post, "createdAt": now})
    await _indexed(appview, written["uri"])
    subject = {"uri": written["uri"], "cid": written["cid"]}
    record = {"$type": "app.bsky.feed.repost", "subject": subject, "createdAt": now}
    repost = await _write(devnet, alice, "app.bsky.feed.repost", record)
    commit = {
        "rev": "3lrepost00000",
        "operation": "create",
        "collection": "app.bsky.feed.repost",
        "rkey": repost["uri"].rsplit("/", 1)[1],
        "record": record,
        "cid": repost["cid"],
    }
    await log.append({"did": alice.did, "kind": "commit", "commit": commit})

    await bot.chat.wait_for(1, within_s=15)
    (shown,) = [s.message for s in bot.chat.in_channel("general")]
    assert shown.text == "Bob's thought, worth passing on"
    assert shown.author == bob.display_name
    assert shown.title == f"\u267b reposted by {alice.display_name}"
    assert shown.link.startswith("https://bsky.app/profile/bob.test/post/")

    # Polling the real AppView lists the same repost (the same post id): nothing doubles,
    # and the channel that asked for no reposts never gets it.
    await bot.poll_all()
    await asyncio.sleep(0.3)
    assert len(bot.chat.in_channel("general")) == 1
    assert bot.chat.in_channel("quiet") == []
