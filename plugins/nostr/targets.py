"""What a member can follow on nostr, and how each target looks on the wire.

An account is a pubkey (`authors` filter); a hashtag is a `#t` filter. The same
test (`matches`, as `stream.Group.route` applies it) is run locally on every event a
relay sends, because a relay may send anything: an event only reaches a channel if it
really matches the target.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from bot.errors import UserError
from bot.model import Target, TargetKind
from plugins.nostr.events import KIND_NOTE, KIND_REPOST, Event
from plugins.nostr.keys import InvalidKey, parse_pubkey, short_npub

NOTE_KINDS = (KIND_NOTE, KIND_REPOST)
# Relays clamp `limit` to their own maximum anyway (commonly 500–5,000).
MAX_FILTER_LIMIT = 5000
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


def merged_note_filters(
    targets: Sequence[Target], floors: Mapping[str, int | None], *, limit: int
) -> list[dict[str, Any]]:
    """One `authors` or `#t` filter for many targets of one kind, instead of one REQ each.

    `floors` maps a target's resource key to its own `since` (None: no cursor yet).
    Targets with a floor share one filter from the lowest of them (the caller drops
    what is older than each target's own floor); those without one get a filter
    with no `since`, as a lone subscription would. Every filter gets the same
    `limit`: some relays (nostr-relay among them) apply one filter's limit to the
    whole REQ.
    """
    dated = [t for t in targets if floors.get(t.resource_key) is not None]
    undated = [t for t in targets if floors.get(t.resource_key) is None]
    filters: list[dict[str, Any]] = []
    for part in (dated, undated):
        if not part:
            continue
        tags = sorted({hashtag(t) for t in part if hashtag(t)})
        authors = sorted({t.key for t in part if not hashtag(t)})
        since = min((floors[t.resource_key] or 0) for t in part) if part is dated else None
        for field, values in (("#t", tags), ("authors", authors)):
            if values:
                query: dict[str, Any] = {"kinds": list(NOTE_KINDS), field: values, "limit": limit}
                if since is not None:
                    query["since"] = max(0, since)
                filters.append(query)
    return filters


def merged_limit(fetch_limit: int, targets: int) -> int:
    """The `limit` of a REQ for many targets: `fetch_limit` each, within what relays allow."""
    return min(fetch_limit * max(1, targets), MAX_FILTER_LIMIT)


def metadata_filter(pubkeys: list[str], *, limit: int | None = None) -> dict[str, Any]:
    """Kind 0 profiles, for display names (replaceable: one per author)."""
    return {"kinds": [0], "authors": pubkeys, "limit": max(limit or 0, len(pubkeys))}


def matches(target: Target, event: Event) -> bool:
    """Does this (verified) event belong to the target, whatever the relay claims?"""
    if event.kind not in NOTE_KINDS:
        return False
    tag = hashtag(target)
    if tag:
        return any(value.lower() == tag for value in event.tag_values("t"))
    return event.pubkey == target.key
