"""What a member can follow on nostr, and how each target looks on the wire.

An account is a pubkey (`authors` filter); a hashtag is a `#t` filter. The same
test is applied locally to every event a relay sends, because a relay may send
anything: an event only reaches a channel if it really matches the target.
"""

from __future__ import annotations

import re
from typing import Any

from bot.errors import UserError
from bot.model import Target, TargetKind
from plugins.nostr.events import KIND_NOTE, KIND_REPOST, Event
from plugins.nostr.keys import InvalidKey, parse_pubkey, short_npub

NOTE_KINDS = (KIND_NOTE, KIND_REPOST)
_HASHTAG = re.compile(r"^#([\w-]{1,100})$")
_ECHO_LIMIT = 80


def _echo(text: str) -> str:
    return text if len(text) <= _ECHO_LIMIT else text[: _ECHO_LIMIT - 1] + "…"


def resolve_target(network: str, kind: TargetKind, query: str) -> Target:
    """Chat input → canonical target; `UserError` with a one-line reason otherwise."""
    text = query.strip()
    if text.startswith("#"):
        match = _HASHTAG.match(text)
        if not match:
            raise UserError(
                f"{_echo(text)!r} is not a hashtag; write one word after #, like #python"
            )
        tag = match.group(1).lower()
        return Target(network, TargetKind.SEARCH, f"#{tag}", f"#{tag}")
    if kind is TargetKind.SEARCH:
        raise UserError(
            "nostr search follows a hashtag: write it with #, like /search nostr #python"
        )
    try:
        pubkey = parse_pubkey(text)
    except InvalidKey:
        raise UserError(
            f"{_echo(text)!r} is not a valid npub or hex public key; "
            "give the npub1… from the person's profile or 64 hex characters"
        ) from None
    return Target(network, TargetKind.ACCOUNT, pubkey, short_npub(pubkey))


def hashtag(target: Target) -> str:
    return target.key[1:] if target.kind is TargetKind.SEARCH else ""


def note_filter(target: Target, *, since: int | None, limit: int) -> dict[str, Any]:
    """The NIP-01 filter for a target's notes and reposts."""
    query: dict[str, Any] = {"kinds": list(NOTE_KINDS), "limit": limit}
    tag = hashtag(target)
    if tag:
        query["#t"] = [tag]
    else:
        query["authors"] = [target.key]
    if since is not None:
        query["since"] = max(0, since)
    return query


def metadata_filter(pubkeys: list[str]) -> dict[str, Any]:
    """Kind 0 profiles, for display names (replaceable: one per author)."""
    return {"kinds": [0], "authors": pubkeys, "limit": len(pubkeys)}


def matches(target: Target, event: Event) -> bool:
    """Does this (verified) event belong to the target, whatever the relay claims?"""
    if event.kind not in NOTE_KINDS:
        return False
    tag = hashtag(target)
    if tag:
        return any(value.lower() == tag for value in event.tag_values("t"))
    return event.pubkey == target.key
