"""Images on post-back end to end: the real CLI and console, the fake Mastodon (which
takes the upload as Mastodon does), a real nostr relay and the fake X.

Starling downloads the picture from a loopback web server once and each network
gets it its own way: Mastodon as an uploaded media attachment with the alt text as
its description, nostr as the link plus a NIP-92 `imeta` tag, X as an uploaded
`tweet_image` with its alt text set through `POST /2/media/metadata`.
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
from tests.test_postback_e2e import NostrTeam, reply_line, statuses, tweets, x_env

pytestmark = pytest.mark.slow


async def test_an_image_reaches_mastodon_nostr_and_x_with_its_alt_text(tmp_path: Path) -> None:
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
            await console.type(
                f"/post --to mastodon,nostr,x --image {image} --alt A_cat_asleep Cat"
            )
            output = await console.expect("x: https://")
            answer = reply_line(output, "Post #1: ")
            assert await console.finish() == 0
            events = await asyncio.to_thread(relay.query, authors=[team.pubkey], kinds=[1])
    finally:
        relay.stop()

    assert "mastodon: https://" in answer
    assert "nostr: https://" in answer
    [tweet] = tweets(x, "Cat")
    assert answer.endswith(f"; x: https://x.com/i/web/status/{tweet['id']}")
    [upload] = x.uploads.values()
    assert (upload["data"], upload["category"]) == (PNG, "tweet_image")
    assert (upload["alt_text"], upload["tweet_id"]) == ("A cat asleep", tweet["id"])
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
    assert pictures.paths == ["/cat.png"], "one download for all three networks"
    assert "Traceback" not in console.output
