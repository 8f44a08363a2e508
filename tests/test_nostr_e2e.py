"""End to end: the real CLI with the console chat, following a pubkey on a real relay.

The relay list comes from the environment as an operator would set it
(`STARLING_NOSTR__RELAYS` as a JSON list); a note published to the relay by
someone else's client appears in the console exactly once.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.fakes.nostr_relay import Author, NostrRelay
from tests.test_e2e_cli import Console

pytestmark = pytest.mark.slow


async def test_a_note_published_to_the_relay_appears_once_in_the_console(tmp_path: Path) -> None:
    relay = NostrRelay(tmp_path / "relay").start()
    try:
        author = Author()
        await asyncio.to_thread(relay.send, author.event("an older note, not to be shown"))
        console = await Console.start(
            tmp_path / "data",
            STARLING_NOSTR__RELAYS=json.dumps([relay.url]),
            STARLING_NOSTR__RECONNECT_MIN_S="0.1",
            STARLING_NOSTR__RECONNECT_MAX_S="0.5",
        )
        await console.type(f"/follow nostr {author.npub}")
        await console.expect("as #1")
        await console.type("/list")
        await console.expect("#1 nostr follow npub1")
        note = author.event("Fresh from nostr: Starling 1.0 ships today")
        # The stream may connect a moment after the follow; `since` covers the gap.
        accepted, _ = await asyncio.to_thread(relay.send, note)
        assert accepted
        await console.expect("\nFresh from nostr: Starling 1.0 ships today\n", timeout=20)
        await asyncio.sleep(0.5)  # a duplicate from a poll or a reconnect would show by now
        assert await console.finish() == 0
    finally:
        relay.stop()
    output = console.output
    assert output.count("\nFresh from nostr: Starling 1.0 ships today\n") == 1
    assert "an older note" not in output
    assert "· nostr · npub1" in output
    assert "https://njump.me/nevent1" in output
    assert "Traceback" not in output
