"""Verified nostr events → neutral `Post`s.

Kind 1 content is plain text by the protocol (NIP-01), so it is not run through
the HTML converter; it is still untrusted and the core's renderer defuses it.
Display names come from kind 0 metadata when a relay has sent one (kept in a
small in-memory cache); otherwise the author is shown as a short npub.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.model import Author, Media, Post
from plugins.nostr.events import (
    KIND_METADATA,
    KIND_NOTE,
    KIND_REPOST,
    Event,
    NotAnEvent,
    decode_event,
    is_valid,
)
from plugins.nostr.keys import nevent, note, npub, short_npub

_URL = re.compile(r"https?://[^\s<>\"'`]+", re.IGNORECASE)
_TRAILING = ".,;:!?)]}'\""
_IMAGE = re.compile(r"\.(?:png|jpe?g|gif|webp|avif)(?:\?[^\s]*)?$", re.IGNORECASE)
NAME_LIMIT = 80
MAX_LINKS = 20
_REPLY_MARKERS = frozenset({"", "reply", "root"})


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    picture: str
    created_at: int


class Profiles:
    """The newest kind 0 metadata seen per pubkey, bounded (least recently used goes first)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._by_pubkey: OrderedDict[str, Profile] = OrderedDict()

    def get(self, pubkey: str) -> Profile | None:
        profile = self._by_pubkey.get(pubkey)
        if profile is not None:
            self._by_pubkey.move_to_end(pubkey)
        return profile

    def learn(self, event: Event) -> None:
        """Remember a (verified) kind 0 event if it is newer than what is known."""
        if event.kind != KIND_METADATA:
            return
        known = self._by_pubkey.get(event.pubkey)
        if known is not None and known.created_at >= event.created_at:
            return
        try:
            data = json.loads(event.content)
        except (ValueError, RecursionError):
            return
        if not isinstance(data, dict):
            return
        name = ""
        for field in ("display_name", "displayName", "name"):
            value = data.get(field)
            if isinstance(value, str) and value.strip():
                name = " ".join(value.split())[:NAME_LIMIT]
                break
        picture = data.get("picture")
        picture = picture if isinstance(picture, str) and _URL.fullmatch(picture) else ""
        self._by_pubkey[event.pubkey] = Profile(name, picture, event.created_at)
        self._by_pubkey.move_to_end(event.pubkey)
        while len(self._by_pubkey) > self._capacity:
            self._by_pubkey.popitem(last=False)


def _links(text: str) -> list[str]:
    found: list[str] = []
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(_TRAILING)
        if url not in found:
            found.append(url)
        if len(found) >= MAX_LINKS:
            break
    return found


def is_reply(event: Event) -> bool:
    """NIP-10: marked `reply`/`root` e tags, or the older unmarked positional e tags."""
    return any(
        len(tag) >= 2 and tag[0] == "e" and (tag[3] if len(tag) >= 4 else "") in _REPLY_MARKERS
        for tag in event.tags
    )


def _timestamp(seconds: int) -> datetime | None:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


class PostBuilder:
    """Turns verified events into posts using the configured link templates."""

    def __init__(self, network: str, profiles: Profiles, web_url: str, profile_url: str) -> None:
        self.network = network
        self._profiles = profiles
        self._web_url = web_url
        self._profile_url = profile_url

    def permalink(self, event_id: str, author: str = "", kind: int | None = None) -> str:
        return self._web_url.format(
            id=event_id,
            note=note(event_id),
            nevent=nevent(event_id, author, kind),
            npub=npub(author) if author else "",
        )

    def author(self, pubkey: str) -> Author:
        profile = self._profiles.get(pubkey)
        full = npub(pubkey)
        return Author(
            name=(profile.name if profile and profile.name else short_npub(pubkey)),
            handle=full,
            url=self._profile_url.format(npub=full, pubkey=pubkey),
            avatar_url=profile.picture if profile else "",
        )

    def build(self, event: Event) -> Post | None:
        """A post for kind 1 notes and kind 6 reposts; None for every other kind."""
        if event.kind == KIND_NOTE:
            return self._note(event)
        if event.kind == KIND_REPOST:
            return self._repost(event)
        return None

    def _note(self, event: Event) -> Post:
        links = _links(event.content)
        return Post(
            network=self.network,
            native_id=event.id,
            author=self.author(event.pubkey),
            text=event.content,
            permalink=self.permalink(event.id, event.pubkey, event.kind),
            links=tuple(links),
            media=tuple(Media(url) for url in links if _IMAGE.search(url)),
            created_at=_timestamp(event.created_at),
            is_reply=is_reply(event),
            is_quote=bool(event.tag_values("q")),
        )

    def _repost(self, event: Event) -> Post:
        """NIP-18: the reposted note is embedded as JSON; shown only if its signature holds."""
        inner = _embedded(event.content)
        reposted = event.tag_values("e")
        if inner is not None and inner.kind == KIND_NOTE:
            original = self.author(inner.pubkey)
            links = _links(inner.content)
            text = f"Reposted from {original.name}:\n{inner.content}"
            permalink = self.permalink(inner.id, inner.pubkey, inner.kind)
        else:
            links = []
            text = "Reposted a note."
            permalink = self.permalink(reposted[0]) if reposted and _is_id(reposted[0]) else ""
        return Post(
            network=self.network,
            native_id=event.id,
            author=self.author(event.pubkey),
            text=text,
            permalink=permalink or self.permalink(event.id, event.pubkey, event.kind),
            links=tuple(links),
            media=tuple(Media(url) for url in links if _IMAGE.search(url)),
            created_at=_timestamp(event.created_at),
            is_repost=True,
        )


def _is_id(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _embedded(content: str) -> Event | None:
    if not content.strip().startswith("{"):
        return None
    try:
        inner = decode_event(json.loads(content))
    except (ValueError, RecursionError, NotAnEvent):
        return None
    return inner if is_valid(inner) else None
