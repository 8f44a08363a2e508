"""Link cards for outgoing posts: the first link's title, description and picture.

Bluesky's app does not fetch link previews for a post; the poster embeds one
(`app.bsky.embed.external`) with the picture uploaded as a blob. The page and the
picture come from wherever the member's link points, so both are fetched through
Starling's SSRF guard (`bot.netguard`): every hop of every redirect is vetted
before connecting and at the moment of connecting. A card is an extra: anything
that goes wrong here (blocked, slow, too large, not HTML) leaves the post without
one, and the post is sent all the same.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin

import aiohttp

from bot.errors import UserError
from bot.guardedfetch import guarded_get, guarded_session
from bot.html import clip_text
from bot.postimages import IMAGE_TYPES, MAX_IMAGE_BYTES

log = logging.getLogger(__name__)

MAX_PAGE_BYTES = 1_000_000
MAX_TITLE = 300
MAX_DESCRIPTION = 1000
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class PageCard:
    """What a page says about itself (Open Graph first, then plain HTML)."""

    url: str
    title: str
    description: str
    image_url: str


@dataclass(frozen=True, slots=True)
class Thumb:
    data: bytes
    mime: str


class _Meta(HTMLParser):
    """Collects `<meta property|name=… content=…>` and the `<title>` text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta: dict[str, str] = {}
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag == "meta":
            found = {k.lower(): v or "" for k, v in attrs}
            name = (found.get("property") or found.get("name") or "").lower()
            if name and "content" in found:
                self.meta.setdefault(name, found["content"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def _clean(text: str, limit: int) -> str:
    return clip_text(_SPACE.sub(" ", text).strip(), limit)


def _mime(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _html_only(content_type: str) -> None:
    """Refuses a page that is not HTML before its body is read: it has no card."""
    if "html" not in content_type.lower():
        raise UserError(f"not HTML ({_mime(content_type) or 'no Content-Type'})")


def _images_only(content_type: str) -> None:
    """Refuses a picture Bluesky would not take as a thumb before its body is read."""
    if _mime(content_type) not in IMAGE_TYPES:
        raise UserError(f"not a picture Bluesky takes ({_mime(content_type) or 'no type'})")


def parse_card(url: str, html: str) -> PageCard | None:
    """The card of a page, or None when the page names neither a title nor a description."""
    parser = _Meta()
    try:
        parser.feed(html)
        parser.close()
    except (ValueError, AssertionError):  # HTMLParser on badly broken markup
        pass
    meta = parser.meta
    title = meta.get("og:title") or meta.get("twitter:title") or parser.title
    description = (
        meta.get("og:description") or meta.get("twitter:description") or meta.get("description")
    )
    image = meta.get("og:image") or meta.get("og:image:url") or meta.get("twitter:image") or ""
    title, description = _clean(title, MAX_TITLE), _clean(description or "", MAX_DESCRIPTION)
    if not title and not description:
        return None
    image_url = urljoin(url, image.strip()) if image.strip() else ""
    return PageCard(url, title, description, image_url)


def _charset(content_type: str) -> str:
    match = re.search(r"charset=[\"']?([\w-]+)", content_type, re.IGNORECASE)
    return match.group(1) if match else "utf-8"


class PageReader:
    """Reads pages and pictures for link cards through the SSRF guard.

    Posting is rare, so each card gets its own short-lived session: nothing stays
    open between posts and nothing needs closing when the plugin stops.
    """

    def __init__(self, *, allow_private: bool, user_agent: str, timeout_s: float) -> None:
        self._allow_private = allow_private
        self._user_agent = user_agent
        self._timeout_s = timeout_s

    async def card(self, url: str) -> tuple[PageCard, Thumb | None] | None:
        """The card for `url` and its picture (if any), or None; never raises for the page."""
        try:
            async with asyncio.timeout(self._timeout_s), self._session() as session:
                final, content_type, body = await self._get(
                    session, url, MAX_PAGE_BYTES, _html_only
                )
                page = body.decode(_charset(content_type), errors="replace")
                found = parse_card(final, page)
                if found is None:
                    return None
                found = PageCard(url, found.title, found.description, found.image_url)
                return found, await self._thumb(session, found.image_url)
        except (TimeoutError, aiohttp.ClientError, OSError, UserError, LookupError) as err:
            log.info("no link card for %s: %s", url, err or type(err).__name__)
            return None

    async def _thumb(self, session: aiohttp.ClientSession, url: str) -> Thumb | None:
        if not url:
            return None
        try:
            # Bluesky's limit for an external embed's thumb is that of any image blob.
            _, content_type, body = await self._get(session, url, MAX_IMAGE_BYTES, _images_only)
        except (aiohttp.ClientError, OSError, UserError) as err:
            log.info("link card without a picture (%s): %s", url, err or type(err).__name__)
            return None
        return Thumb(body, _mime(content_type)) if body else None

    def _session(self) -> aiohttp.ClientSession:
        return guarded_session(allow_private=self._allow_private, user_agent=self._user_agent)

    async def _get(
        self,
        session: aiohttp.ClientSession,
        url: str,
        limit: int,
        check_type: Callable[[str], None],
    ) -> tuple[str, str, bytes]:
        """(final URL, Content-Type, body); raises `UserError` if refused."""
        fetched = await guarded_get(
            session, url, allow_private=self._allow_private, limit=limit, check_type=check_type
        )
        return fetched.url, fetched.content_type, fetched.body
