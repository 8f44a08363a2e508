"""Images on Bluesky posts, against the real local Bluesky network (`@atproto/dev-env`).

Starling hands the publisher the picture it downloaded; the publisher uploads it as
a blob and embeds it with its alt text, and next to a quote in a recordWithMedia.
The blob is read back from the PDS (`com.atproto.sync.getBlob`) to prove the bytes.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bot.protocols import Draft, DraftImage
from tests.atproto.devnet import Devnet, devnet
from tests.fakes.image_server import PNG
from tests.test_bluesky_devnet import _indexed, _record
from tests.test_bluesky_linkcards import _network

__all__ = ["devnet"]

CAT = DraftImage("https://pictures.example/cat.png", "A cat asleep", PNG, "image/png")


@pytest.mark.atproto
async def test_an_image_is_uploaded_and_embedded_with_its_alt_text(
    devnet: Devnet, tmp_path: Path
) -> None:
    network = _network(devnet, tmp_path, allow_private=False)
    assert network.publisher is not None
    published = await network.publisher.publish(
        Draft("Our new mascot https://example.com/about", images=(CAT,)), "starling:image:1"
    )
    embed = (await _record(devnet, published.native_id))["value"]["embed"]
    assert embed["$type"] == "app.bsky.embed.images", "images win over a link card"
    [image] = embed["images"]
    assert image["alt"] == "A cat asleep"
    blob = image["image"]
    assert (blob["mimeType"], blob["size"]) == ("image/png", len(PNG))
    async with httpx.AsyncClient() as client:
        got = await client.get(
            f"{devnet.pds}/xrpc/com.atproto.sync.getBlob",
            params={"did": devnet.accounts["alice"].did, "cid": blob["ref"]["$link"]},
        )
    assert got.content == PNG

    devnet.require_appview()
    await _indexed(devnet, published.native_id)
    quote = await network.publisher.publish(
        Draft("Look again", quote_of=published.url, images=(CAT,)), "starling:image:2"
    )
    await network.aclose()
    embed = (await _record(devnet, quote.native_id))["value"]["embed"]
    assert embed["$type"] == "app.bsky.embed.recordWithMedia"
    assert embed["record"]["record"]["uri"] == published.native_id
    assert embed["media"]["$type"] == "app.bsky.embed.images"
    assert embed["media"]["images"][0]["alt"] == "A cat asleep"
