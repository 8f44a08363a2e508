"""Turn the core's neutral `RichMessage` into Discord embeds and reply text.

Discord rejects a whole message when one limit is exceeded, so Starling enforces
every limit itself, counted in UTF-16 units as Discord counts them: title 256,
description 4096, footer 2048, author name 256, 25 fields of 256/1024, 6,000
characters across an embed, 10 embeds, 2,000 characters of content.

The footer carries `ref <token>`, a short hash of the delivery's idempotency key;
`find_sent` looks for it after a crash. The same token is the message nonce.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import discord

from bot.model import RichMessage
from plugins.discord.escape import fit, markdown_safe, one_line, plain_safe, utf16_len

TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FOOTER_LIMIT = 2048
AUTHOR_LIMIT = 256
FIELDS_LIMIT = 25
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
EMBED_TOTAL_LIMIT = 6000
EMBEDS_PER_MESSAGE = 10
CONTENT_LIMIT = 2000
URL_LIMIT = 2048
THREAD_NAME_LIMIT = 100
WEBHOOK_NAME_LIMIT = 80
NONCE_LIMIT = 25
GALLERY_IMAGES = 4  # Discord shows up to four same-URL embeds as one image gallery
MAX_REPLY_CHUNKS = 8

COLOUR = discord.Colour(0x3D9BE9)
REF_PREFIX = "ref "
_SEPARATOR = " · "
_FORBIDDEN_WEBHOOK_NAME = re.compile(r"discord|clyde", re.IGNORECASE)


def key_token(key: str) -> str:
    """A 20-hex-digit digest of the idempotency key: fits the 25-character nonce."""
    return hashlib.blake2b(key.encode("utf-8"), digest_size=10).hexdigest()


def footer_marker(token: str) -> str:
    return REF_PREFIX + token


def _url(url: str) -> str | None:
    if not url or utf16_len(url) > URL_LIMIT or not url.startswith(("https://", "http://")):
        return None
    return None if any(ch.isspace() for ch in url) else url


def build_embeds(message: RichMessage, token: str) -> list[discord.Embed]:
    """The embeds for one relayed post, within every Discord limit, mentions inert."""
    marker = footer_marker(token)
    footer_parts = [part for part in (message.network, message.footer) if part.strip()]
    footer_room = FOOTER_LIMIT - utf16_len(marker) - utf16_len(_SEPARATOR)
    footer_text = fit(plain_safe(one_line(_SEPARATOR.join(footer_parts))), footer_room)
    footer = f"{footer_text}{_SEPARATOR}{marker}" if footer_text else marker
    author = fit(plain_safe(one_line(message.author)), AUTHOR_LIMIT)
    title = fit(markdown_safe(one_line(message.title)), TITLE_LIMIT)
    room = EMBED_TOTAL_LIMIT - utf16_len(footer) - utf16_len(author) - utf16_len(title)
    description = fit(markdown_safe(message.text.strip()), min(DESCRIPTION_LIMIT, room))
    link = _url(message.link)
    main = discord.Embed(
        title=title or None,
        url=link,  # also what "Post a reply from Starling" replies to
        description=description or None,
        colour=COLOUR,
        timestamp=message.timestamp.astimezone(UTC) if message.timestamp else None,
    )
    if author:
        main.set_author(
            name=author, url=_url(message.author_url), icon_url=_url(message.avatar_url)
        )
    main.set_footer(text=footer)
    images = [url for url in (_url(m.url) for m in message.images) if url]
    if not images:
        return [main]
    main.set_image(url=images[0])
    if link is None or not title:
        return [main]
    # Same-URL embeds that carry only an image are shown as one gallery.
    gallery = [discord.Embed(url=link).set_image(url=url) for url in images[1:GALLERY_IMAGES]]
    return [main, *gallery][:EMBEDS_PER_MESSAGE]


def embed_size(embed: discord.Embed) -> int:
    """Characters that count towards Discord's 6,000 per embed, in UTF-16 units."""
    data: dict[str, Any] = dict(embed.to_dict())
    total = utf16_len(data.get("title", "") or "") + utf16_len(data.get("description", "") or "")
    total += utf16_len((data.get("footer") or {}).get("text", "") or "")
    total += utf16_len((data.get("author") or {}).get("name", "") or "")
    for field in data.get("fields", []) or []:
        total += utf16_len(field.get("name", "")) + utf16_len(field.get("value", ""))
    return total


def limit_violations(embeds: list[discord.Embed]) -> list[str]:
    """Every Discord embed limit these embeds break (empty when they are valid)."""
    problems: list[str] = []
    if len(embeds) > EMBEDS_PER_MESSAGE:
        problems.append(f"{len(embeds)} embeds")
    for index, embed in enumerate(embeds):
        data: dict[str, Any] = dict(embed.to_dict())
        checks = [
            ("title", data.get("title") or "", TITLE_LIMIT),
            ("description", data.get("description") or "", DESCRIPTION_LIMIT),
            ("footer", (data.get("footer") or {}).get("text") or "", FOOTER_LIMIT),
            ("author", (data.get("author") or {}).get("name") or "", AUTHOR_LIMIT),
        ]
        fields = data.get("fields") or []
        if len(fields) > FIELDS_LIMIT:
            problems.append(f"embed {index}: {len(fields)} fields")
        for field in fields:
            checks.append(("field name", field.get("name", ""), FIELD_NAME_LIMIT))
            checks.append(("field value", field.get("value", ""), FIELD_VALUE_LIMIT))
        problems += [
            f"embed {index}: {what} is {utf16_len(text)} > {limit}"
            for what, text, limit in checks
            if utf16_len(text) > limit
        ]
        if embed_size(embed) > EMBED_TOTAL_LIMIT:
            problems.append(f"embed {index}: {embed_size(embed)} characters in all")
    return problems


def thread_name(message: RichMessage) -> str:
    """A forum post's title: one line, at most 100 characters, never empty."""
    source = message.title or message.text or message.author or message.network
    return fit(plain_safe(one_line(source)), THREAD_NAME_LIMIT) or "New post"


def webhook_username(author: str) -> str | None:
    """The author's name for a webhook post, or None where Discord would refuse it."""
    name = fit(plain_safe(one_line(author)), WEBHOOK_NAME_LIMIT)
    if not name or _FORBIDDEN_WEBHOOK_NAME.search(name) or name.lower() in ("everyone", "here"):
        return None
    return name


@dataclass(frozen=True, slots=True)
class FooterMatch:
    token: str

    def found_in(self, message: Mapping[str, Any]) -> bool:
        """True when a raw message carries this token as nonce or in an embed footer."""
        if message.get("nonce") == self.token:
            return True
        embeds = message.get("embeds")
        if not isinstance(embeds, list):
            return False
        marker = footer_marker(self.token)
        for embed in embeds:
            footer = embed.get("footer") if isinstance(embed, dict) else None
            text = footer.get("text") if isinstance(footer, dict) else None
            if isinstance(text, str) and text.endswith(marker):
                return True
        return False


def reply_chunks(text: str) -> list[str]:
    """A command's answer as message contents of at most 2,000 characters each."""
    chunks: list[str] = []
    current = ""
    for line in markdown_safe(text).split("\n"):
        pieces = _split_long(line) if utf16_len(line) > CONTENT_LIMIT else [line]
        for piece in pieces:
            joined = f"{current}\n{piece}" if current else piece
            if utf16_len(joined) <= CONTENT_LIMIT:
                current = joined
                continue
            chunks.append(current)
            current = piece
    if current or not chunks:
        chunks.append(current or "…")
    if len(chunks) > MAX_REPLY_CHUNKS:
        chunks = chunks[:MAX_REPLY_CHUNKS]
        chunks[-1] = fit(chunks[-1], CONTENT_LIMIT - 40) + " (the rest is cut)"
    return chunks


def _split_long(line: str) -> list[str]:
    pieces: list[str] = []
    while utf16_len(line) > CONTENT_LIMIT:
        head = fit(line, CONTENT_LIMIT)[:-1]  # drop the ellipsis: the next piece goes on
        if not head:
            break
        pieces.append(head)
        line = line[len(head) :]
    pieces.append(line)
    return pieces
