"""Images on post-back end to end: the real CLI and console, the fake Mastodon (which
takes the upload as Mastodon does), a real nostr relay and the fake X.

Starling downloads the picture from a loopback web server once and each network
gets it its own way: Mastodon as an uploaded media attachment with the alt text as
its description, nostr as the link plus a NIP-92 `imeta` tag; X refuses, clearly.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from tests.fakes.image_server import PNG, image_server
from tests.fakes.mastodon_server import MastodonFake, plugin_env
from tests.fakes.nostr_relay import NostrRelay
from tests.fakes.x_server import serving
from tests.test_e2e_cli import Console
from tests.test_postback_e2e import NostrTeam, reply_line, statuses, x_env

pytestmark = pytest.mark.slow


async def test_an_image_reaches_mastodon_and_nostr_with_its_alt_text(tmp_path: Path) -> None:
    team = NostrTeam()
    relay = await asyncio.to_thread(NostrRelay(tmp_path / "relay").start)
    try:
        async with (
            image_server() as pictures,
            MastodonFake(seed="none") as mastodon,
            serving() as x,
        ):
            console = await Console.start(
                tmp_path / "data", **plugin_env(mastodon), **team.env(relay), **x_env(x)
            )
            image = f"{pictures.url}/cat.png"
            await console.type(f"/post --to mastodon,x --image {image} --alt A_cat Hi")
            refused = reply_line(await console.expect("leave x out"), "/post")
            await console.type(f"/post --to mastodon,nostr --image {image} --alt A_cat_asleep Cat")
            answer = reply_line(await console.expect("nostr: https://"), "Post #1: ")
            assert await console.finish() == 0
            events = await asyncio.to_thread(relay.query, authors=[team.pubkey], kinds=[1])
    finally:
        relay.stop()

    assert refused == (
        "/post: x: images are not supported yet; post without --image or leave x out"
    )
    assert x.requests_to("POST", "/2/tweets") == []
    assert "mastodon: https://" in answer
    [status] = statuses(mastodon, "Cat")
    [attachment] = status["media_attachments"]
    assert attachment["description"] == "A cat asleep"
    [uploaded] = mastodon.media.values()
    assert (uploaded["_data"], uploaded["_mime"]) == (PNG, "image/png")

    [note] = events
    assert note["content"] == f"Cat\n\n{image}"
    [imeta] = [t for t in note["tags"] if t[0] == "imeta"]
    assert imeta == [
        "imeta",
        f"url {image}",
        "m image/png",
        "alt A cat asleep",
        f"x {hashlib.sha256(PNG).hexdigest()}",
    ]
    assert pictures.paths == ["/cat.png"], "one download for both networks; none for X"
    assert "Traceback" not in console.output
