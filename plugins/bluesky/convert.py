"""Bluesky posts (AppView views and raw repo records) to Starling's neutral `Post`.

Two shapes arrive: the AppView's hydrated views (polling: author, avatar and
image URLs filled in) and bare repo records (Jetstream: blobs as CIDs, no
profile). Both become the same `Post` with the same `native_id` (the at:// URI),
so a post seen by the stream and again by a poll is one post.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.model import Author, Media, Post
from plugins.bluesky.ids import permalink, permalink_of_uri, profile_url, split_at_uri
from plugins.bluesky.lexicon import (
    POST_COLLECTION,
    REASON_REPOST,
    FeedViewPost,
    PostRecord,
    PostView,
    ProfileBasic,
    facets_of,
    reply_of,
)

MAX_LINKS = 10
MAX_MEDIA = 4


@dataclass(frozen=True, slots=True)
class Links:
    """Where posts point on the web: the web app for permalinks, the CDN for images."""

    web_url: str
    image_cdn: str


def parse_time(value: str) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def author_of(profile: ProfileBasic, links: Links) -> Author:
    handle = profile.handle if profile.handle and profile.handle != "handle.invalid" else ""
    name = " ".join(profile.display_name.split()) or (f"@{handle}" if handle else profile.did)
    return Author(
        name=name,
        handle=f"@{handle}" if handle else profile.did,
        url=profile_url(links.web_url, handle, profile.did),
        avatar_url=profile.avatar if profile.avatar.startswith("https://") else "",
    )


def _http(url: Any) -> str:
    return url if isinstance(url, str) and url.startswith(("https://", "http://")) else ""


def _record_links(record: PostRecord) -> list[str]:
    found = []
    for facet in facets_of(record):
        for feature in facet.features:
            if feature.type == "app.bsky.richtext.facet#link" and _http(feature.uri):
                found.append(feature.uri)
    return found


def _dedupe(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for i in items if i))[:MAX_LINKS]


def _embed_type(embed: dict[str, Any] | None) -> str:
    kind = embed.get("$type", "") if isinstance(embed, dict) else ""
    return kind.removesuffix("#view") if isinstance(kind, str) else ""


def _quoted_uri(embed: dict[str, Any] | None) -> str:
    """The at:// URI a record or recordWithMedia embed quotes (view or record shape)."""
    kind = _embed_type(embed)
    if embed is None or kind not in ("app.bsky.embed.record", "app.bsky.embed.recordWithMedia"):
        return ""
    inner = embed.get("record")
    if kind == "app.bsky.embed.recordWithMedia" and isinstance(inner, dict):
        inner = inner.get("record", inner)
    uri = inner.get("uri", "") if isinstance(inner, dict) else ""
    return uri if isinstance(uri, str) else ""


def _media_part(embed: dict[str, Any] | None) -> dict[str, Any] | None:
    if _embed_type(embed) == "app.bsky.embed.recordWithMedia" and embed is not None:
        media = embed.get("media")
        return media if isinstance(media, dict) else None
    return embed


def _view_media(embed: dict[str, Any] | None) -> tuple[list[Media], list[str]]:
    """Images, video and link cards from a hydrated embed view."""
    media: list[Media] = []
    links: list[str] = []
    part = _media_part(embed)
    kind = _embed_type(part)
    if part is None:
        return media, links
    if kind == "app.bsky.embed.images":
        for image in part.get("images") or []:
            if isinstance(image, dict) and _http(image.get("fullsize")):
                media.append(Media(image["fullsize"], "image", str(image.get("alt") or "")))
    elif kind == "app.bsky.embed.video":
        if _http(part.get("thumbnail")):
            media.append(Media(part["thumbnail"], "image", str(part.get("alt") or "")))
        if _http(part.get("playlist")):
            media.append(Media(part["playlist"], "video", str(part.get("alt") or "")))
    elif kind == "app.bsky.embed.external":
        external = part.get("external")
        if isinstance(external, dict) and _http(external.get("uri")):
            links.append(external["uri"])
    return media, links


def _blob_cid(blob: Any) -> str:
    if not isinstance(blob, dict):
        return ""
    ref = blob.get("ref")
    if isinstance(ref, dict) and isinstance(ref.get("$link"), str):
        return str(ref["$link"])
    legacy = blob.get("cid")  # the pre-2023 blob shape
    return legacy if isinstance(legacy, str) else ""


def _record_media(
    did: str, embed: dict[str, Any] | None, links: Links
) -> tuple[list[Media], list[str]]:
    """Images and link cards from a bare record: blobs become CDN URLs."""
    media: list[Media] = []
    found: list[str] = []
    part = _media_part(embed)
    kind = _embed_type(part)
    cdn = links.image_cdn.rstrip("/")
    if part is None:
        return media, found
    if kind == "app.bsky.embed.images":
        for image in part.get("images") or []:
            cid = _blob_cid(image.get("image")) if isinstance(image, dict) else ""
            if cid:
                url = f"{cdn}/img/feed_fullsize/plain/{did}/{cid}@jpeg"
                media.append(Media(url, "image", str(image.get("alt") or "")))
    elif kind == "app.bsky.embed.video":
        cid = _blob_cid(part.get("video"))
        if cid:
            url = f"{cdn}/img/feed_thumbnail/plain/{did}/{cid}@jpeg"
            media.append(Media(url, "image", str(part.get("alt") or "")))
    elif kind == "app.bsky.embed.external":
        external = part.get("external")
        if isinstance(external, dict) and _http(external.get("uri")):
            found.append(external["uri"])
    return media, found


def from_view(network: str, item: FeedViewPost | PostView, links: Links) -> Post:
    """A hydrated post from an author feed (which may carry a repost reason) or a search."""
    view = item.post if isinstance(item, FeedViewPost) else item
    reason = item.reason if isinstance(item, FeedViewPost) else None
    record = view.record
    try:
        _, _, rkey = split_at_uri(view.uri)
    except ValueError:
        rkey = ""
    media, card_links = _view_media(view.embed)
    quoted = _quoted_uri(view.embed)
    is_repost = reason is not None and reason.type == REASON_REPOST
    title = ""
    if is_repost and reason is not None and reason.by is not None:
        title = f"♻ reposted by {author_of(reason.by, links).name}"
    return Post(
        network=network,
        native_id=view.uri,
        author=author_of(view.author, links),
        text=record.text,
        permalink=permalink(links.web_url, view.author.handle, view.author.did, rkey),
        title=title,
        links=_dedupe(
            [*_record_links(record), *card_links, permalink_of_uri(links.web_url, quoted)]
        ),
        media=tuple(media[:MAX_MEDIA]),
        created_at=parse_time(record.created_at) or parse_time(view.indexed_at),
        is_reply=record.reply is not None,
        is_repost=is_repost,
        reply_to_id="" if is_repost else parent_uri(record),
        is_quote=bool(quoted) and "/app.bsky.feed.post/" in quoted,
    )


def from_record(
    network: str,
    did: str,
    rkey: str,
    record: PostRecord,
    profile: ProfileBasic,
    links: Links,
) -> Post:
    """A bare post record as Jetstream delivers it; `profile` comes from a cache."""
    media, card_links = _record_media(did, record.embed, links)
    quoted = _quoted_uri(record.embed)
    return Post(
        network=network,
        native_id=post_uri(did, rkey),
        author=author_of(profile, links),
        text=record.text,
        permalink=permalink(links.web_url, profile.handle, did, rkey),
        links=_dedupe(
            [*_record_links(record), *card_links, permalink_of_uri(links.web_url, quoted)]
        ),
        media=tuple(media[:MAX_MEDIA]),
        created_at=parse_time(record.created_at),
        is_reply=record.reply is not None,
        is_quote=bool(quoted) and "/app.bsky.feed.post/" in quoted,
        reply_to_id=parent_uri(record),
    )


def post_uri(did: str, rkey: str) -> str:
    """A post's at:// URI: its `native_id`, whether it came from a feed or Jetstream."""
    return f"at://{did}/{POST_COLLECTION}/{rkey}"


def parent_uri(record: PostRecord) -> str:
    """The at:// URI of the post this one replies to ("" for none or a malformed ref)."""
    reply = reply_of(record)
    return reply.parent.uri if reply is not None and reply.parent.uri.startswith("at://") else ""
