"""The team's accounts for post-back tests through a chat: fake Mastodon, fake X, real nostr."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from tests.fakes.mastodon_server import MastodonFake
from tests.fakes.mastodon_server import plugin_config as mastodon_config
from tests.fakes.nostr_relay import NostrRelay
from tests.fakes.x_server import XServer, serving
from tests.fakes.x_server import plugin_config as x_config
from tests.test_postback_e2e import NostrTeam, statuses, tweets

__all__ = ["Networks", "networks", "statuses", "tweets"]


class Networks:
    """The team's accounts: fake Mastodon, fake X, a real nostr relay."""

    def __init__(self, mastodon: MastodonFake, x: XServer, relay: NostrRelay) -> None:
        self.mastodon, self.x, self.relay = mastodon, x, relay
        self.team = NostrTeam()

    def settings(self) -> dict[str, Any]:
        return {
            "mastodon": mastodon_config(self.mastodon),
            "x": x_config(self.x, oauth1=True),
            "nostr": {
                "relays": [self.relay.url],
                "secret_key": self.team.secret,
                "reconnect_min_s": 0.1,
                "reconnect_max_s": 0.3,
                "timeout_s": 2,
            },
        }

    async def copies(self, text: str) -> tuple[int, int, int]:
        """How many times `text` is on Mastodon, X and nostr."""
        notes = await self.team.notes(self.relay, text)
        return len(statuses(self.mastodon, text)), len(tweets(self.x, text)), len(notes)


@pytest_asyncio.fixture
async def networks(tmp_path: Path) -> AsyncIterator[Networks]:
    relay = await asyncio.to_thread(NostrRelay(tmp_path / "relay").start)
    try:
        async with MastodonFake(seed="none") as mastodon, serving() as x:
            yield Networks(mastodon, x, relay)
    finally:
        await asyncio.to_thread(relay.stop)
