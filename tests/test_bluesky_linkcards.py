"""Link cards on posts, against the real local Bluesky network and a local web page.

The post is written to the real PDS (`@atproto/dev-env`), the picture uploaded
with `com.atproto.repo.uploadBlob` and read back with `com.atproto.sync.getBlob`.
The page lives on a loopback web server; with private addresses not allowed, the
SSRF guard keeps Starling away from it and the post goes out without a card.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from bot.clock import SystemClock
from bot.health import HealthBook
from bot.protocols import Draft, PluginContext
from plugins.bluesky import BlueskyNetwork, create
from plugins.bluesky.linkcard import parse_card
from tests.atproto.devnet import Devnet, devnet
from tests.test_bluesky_devnet import _record

__all__ = ["devnet"]


def tiny_png() -> bytes:
    """A valid 1×1 PNG, made here so the test needs no image file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x80\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


PNG = tiny_png()
ARTICLE = """<!doctype html><html><head><meta charset="utf-8">
<title>Fallback title</title>
<meta property="og:title" content="Starlings &amp; their murmurations">
<meta property="og:description" content="  Why thousands of birds
   turn as one.  ">
<meta property="og:image" content="/pictures/flock.png">
</head><body><p>Text</p></body></html>"""


class PageServer:
    """A small web site on loopback: an article, a redirect to it, a picture, plain text."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path)
        if request.path == "/go":
            raise web.HTTPFound("/article")
        if request.path == "/article":
            return web.Response(text=ARTICLE, content_type="text/html")
        if request.path == "/pictures/flock.png":
            return web.Response(body=PNG, content_type="image/png")
        return web.Response(text="just text", content_type="text/plain")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest_asyncio.fixture
async def pages() -> AsyncIterator[PageServer]:
    server = PageServer()
    await server.start()
    yield server
    await server.stop()


def _network(net: Devnet, data_dir: Path, *, allow_private: bool, **extra: Any) -> BlueskyNetwork:
    who = net.accounts["alice"]
    config: dict[str, Any] = {
        "service": net.pds,
        "appview": net.appview or net.pds,
        "jetstream": "ws://127.0.0.1:9",
        "handle": who.handle,
        "app_password": who.password,
        **extra,
    }
    health = HealthBook(SystemClock())
    return create(
        PluginContext("bluesky", config, health, SystemClock(), allow_private, str(data_dir))
    )


@pytest.mark.atproto
async def test_the_first_link_gets_a_card_with_its_picture(
    devnet: Devnet, pages: PageServer, tmp_path: Path
) -> None:
    network = _network(devnet, tmp_path, allow_private=True)
    assert network.publisher is not None
    link = f"{pages.url}/go"
    text = f"Worth a read: {link} and also {pages.url}/other"
    published = await network.publisher.publish(Draft(text), "starling:card:1")
    await network.aclose()

    value = (await _record(devnet, published.native_id))["value"]
    assert value["text"] == text
    external = value["embed"]["external"]
    assert value["embed"]["$type"] == "app.bsky.embed.external"
    assert external["uri"] == link, "the link as written, not where it redirected"
    assert external["title"] == "Starlings & their murmurations"
    assert external["description"] == "Why thousands of birds turn as one."
    thumb = external["thumb"]
    assert (thumb["mimeType"], thumb["size"]) == ("image/png", len(PNG))
    async with httpx.AsyncClient() as client:
        blob = await client.get(
            f"{devnet.pds}/xrpc/com.atproto.sync.getBlob",
            params={"did": devnet.accounts["alice"].did, "cid": thumb["ref"]["$link"]},
        )
    assert blob.content == PNG
    assert pages.paths == ["/go", "/article", "/pictures/flock.png"], "only the first link"


@pytest.mark.atproto
async def test_no_card_when_the_guard_refuses_or_the_page_has_none(
    devnet: Devnet, pages: PageServer, tmp_path: Path
) -> None:
    guarded = _network(devnet, tmp_path / "guarded", allow_private=False)
    assert guarded.publisher is not None
    refused = await guarded.publisher.publish(
        Draft(f"Inside: {pages.url}/article"), "starling:card:2"
    )
    await guarded.aclose()
    assert pages.paths == [], "the SSRF guard kept Starling off the private address"
    assert "embed" not in (await _record(devnet, refused.native_id))["value"]

    plain = _network(devnet, tmp_path / "plain", allow_private=True)
    off = _network(devnet, tmp_path / "off", allow_private=True, link_cards="false")
    assert plain.publisher is not None
    assert off.publisher is not None
    text_page = await plain.publisher.publish(
        Draft(f"See {pages.url}/notes.txt"), "starling:card:3"
    )
    switched_off = await off.publisher.publish(Draft(f"See {pages.url}/article"), "starling:card:4")
    await plain.aclose()
    await off.aclose()
    for published in (text_page, switched_off):
        assert "embed" not in (await _record(devnet, published.native_id))["value"]
    assert pages.paths == ["/notes.txt"], "link_cards = false fetches nothing"


def test_a_page_card_prefers_open_graph_and_falls_back_to_html() -> None:
    card = parse_card("https://example.com/a/b", ARTICLE)
    assert card is not None
    assert card.image_url == "https://example.com/pictures/flock.png"
    plain = parse_card(
        "https://example.com/",
        '<title> Just  a title </title><meta name="description" content="Words">',
    )
    assert plain is not None
    assert (plain.title, plain.description, plain.image_url) == ("Just a title", "Words", "")
    assert parse_card("https://example.com/", "<p>no head at all</p>") is None
    long = parse_card("https://e.com/", f"<title>{'x' * 400}</title>")
    assert long is not None
    assert len(long.title) == 300
    assert long.title.endswith("…")
