"""Bluesky identifiers: handles, DIDs, at:// URIs, web links and record keys.

Everything a member types is checked here before any request is made, so a typo
gets a one-line answer instead of a round trip to the AppView.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

from bot.errors import UserError
from plugins.bluesky.lexicon import POST_COLLECTION

_HANDLE = re.compile(
    r"^(?=.{3,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"
)
_DID = re.compile(r"^did:(plc:[a-z2-7]{24}|web:[a-zA-Z0-9.:%-]{1,250})$")
_AT_URI = re.compile(r"^at://([^/\s]+)/([a-zA-Z0-9.-]+)/([a-zA-Z0-9._:~-]{1,512})$")
_RKEY = re.compile(r"^[a-zA-Z0-9._:~-]{1,512}$")

# The alphabet of TIDs (timestamp identifiers): sortable base32.
_TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
# Derived record keys fall between 2020-01-01 and mid-2024 (2**47 µs): always a
# valid TID, never dated in the future.
_TID_EPOCH_US = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp()) * 1_000_000
_TID_SPAN_US = 1 << 47


def is_did(text: str) -> bool:
    return bool(_DID.match(text))


def is_handle(text: str) -> bool:
    return bool(_HANDLE.match(text.lower()))


def actor_from_input(query: str) -> str:
    """A handle or DID from `@alice.bsky.social`, `did:plc:…` or a profile link."""
    text = query.strip().strip("<>")
    if "://" in text:
        return _actor_from_url(text)
    text = text.removeprefix("@")
    if text.startswith("did:"):
        if not is_did(text):
            raise UserError(f"{text!r} is not a valid DID; it looks like did:plc:abc… (24 letters)")
        return text
    handle = text.lower()
    if "." not in handle and re.fullmatch(r"[a-z0-9-]{1,63}", handle):
        raise UserError(f"give the full handle, like @{handle}.bsky.social")
    if not is_handle(handle):
        raise UserError(
            f"{query.strip()!r} is not a Bluesky handle; write it like @alice.bsky.social, "
            "a did:plc:… or a profile link"
        )
    return handle


def _actor_from_url(url: str) -> str:
    parts = urlsplit(url)
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if parts.scheme not in ("http", "https") or len(segments) < 2 or segments[0] != "profile":
        raise UserError(
            "that link is not a Bluesky profile; use one like https://bsky.app/profile/alice.bsky.social"
        )
    return actor_from_input(segments[1])


def split_at_uri(uri: str) -> tuple[str, str, str]:
    """(repo, collection, rkey) of an at:// URI; `ValueError` if it is not one."""
    match = _AT_URI.match(uri)
    if not match:
        raise ValueError(f"not an at:// record URI: {uri!r}")
    return match.group(1), match.group(2), match.group(3)


def post_ref_from_input(text: str) -> tuple[str, str]:
    """(actor, rkey) of a post given as at:// URI or https://bsky.app/profile/…/post/… link."""
    text = text.strip().strip("<>")
    if text.startswith("at://"):
        try:
            repo, collection, rkey = split_at_uri(text)
        except ValueError:
            raise UserError(f"{text!r} is not a post address") from None
        if collection != POST_COLLECTION:
            raise UserError(f"{text!r} is not a post (it is a {collection} record)")
        return actor_from_input(repo), rkey
    parts = urlsplit(text)
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if (
        parts.scheme in ("http", "https")
        and len(segments) == 4
        and segments[0] == "profile"
        and segments[2] == "post"
        and _RKEY.match(segments[3])
    ):
        return actor_from_input(segments[1]), segments[3]
    raise UserError(
        f"{text!r} is not a Bluesky post; give its link, like "
        "https://bsky.app/profile/alice.bsky.social/post/3k…"
    )


def post_uri(did: str, rkey: str) -> str:
    return f"at://{did}/{POST_COLLECTION}/{rkey}"


def permalink(web_url: str, handle: str, did: str, rkey: str) -> str:
    who = handle if handle and handle != "handle.invalid" else did
    return f"{web_url.rstrip('/')}/profile/{who}/post/{rkey}"


def permalink_of_uri(web_url: str, uri: str, handle: str = "") -> str:
    try:
        repo, collection, rkey = split_at_uri(uri)
    except ValueError:
        return ""
    if collection != POST_COLLECTION:
        return ""
    return permalink(web_url, handle, repo, rkey)


def profile_url(web_url: str, handle: str, did: str) -> str:
    who = handle if handle and handle != "handle.invalid" else did
    return f"{web_url.rstrip('/')}/profile/{who}"


def tid_from_key(key: str) -> str:
    """A record key in TID syntax derived only from `key`: a retry writes the same key.

    The PDS refuses a second record under one key, so a retried publish can never
    post twice. 57 bits of SHA-256 make two different keys collide practically never.
    """
    digest = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    timestamp = _TID_EPOCH_US + (digest >> 17) % _TID_SPAN_US
    clock_id = digest & 0x3FF
    value = (timestamp << 10) | clock_id  # top bit stays 0, as TIDs require
    chars = []
    for _ in range(13):
        chars.append(_TID_ALPHABET[value & 0x1F])
        value >>= 5
    return "".join(reversed(chars))
