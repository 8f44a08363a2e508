"""A small web server on loopback that serves pictures for post-back tests.

`/cat.png` is a real 1×1 PNG, `/big.png` is over the size cap, `/page.html` is not
an image and `/go` redirects to the cat; every path asked for is recorded.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web


def tiny_png() -> bytes:
    """A valid 1×1 PNG, made here so tests need no image file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x80\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


PNG = tiny_png()


class ImageServer:
    def __init__(self) -> None:
        self.paths: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path)
        if request.path == "/go":
            raise web.HTTPFound("/cat.png")
        if request.path == "/cat.png":
            return web.Response(body=PNG, content_type="image/png")
        if request.path == "/big.png":
            return web.Response(body=PNG + b"\x00" * 1_100_000, content_type="image/png")
        if request.path == "/page.html":
            return web.Response(text="<p>hello</p>", content_type="text/html")
        return web.Response(status=404, text="not here")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@asynccontextmanager
async def image_server() -> AsyncIterator[ImageServer]:
    server = ImageServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
