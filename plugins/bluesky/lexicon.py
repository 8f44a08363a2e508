"""The parts of the Bluesky lexicons Starling reads, as msgspec structs.

Decoding straight into typed structs is fast (Jetstream pushes thousands of
events a second on a busy host) and turns a malformed answer into one
`msgspec.ValidationError` that the caller classifies as a parse failure.
Unknown fields are ignored, so new lexicon fields never break reading.
Embeds are many-shaped unions keyed by `$type`; they stay plain dicts and are
read defensively in `convert.py`.
"""

from __future__ import annotations

from typing import Any

import msgspec

POST_COLLECTION = "app.bsky.feed.post"
REASON_REPOST = "app.bsky.feed.defs#reasonRepost"


class StrongRef(msgspec.Struct):
    uri: str
    cid: str


class ReplyRef(msgspec.Struct):
    root: StrongRef
    parent: StrongRef


class ByteSlice(msgspec.Struct, rename="camel"):
    byte_start: int
    byte_end: int


class Feature(msgspec.Struct):
    type: str = msgspec.field(default="", name="$type")
    uri: str = ""
    did: str = ""
    tag: str = ""


class Facet(msgspec.Struct):
    index: ByteSlice
    features: list[Feature] = []


class PostRecord(msgspec.Struct, rename="camel"):
    """A post as stored in a repo. Facets and the reply ref are read one by one
    (`facets_of`, `reply_of`) so that one malformed facet cannot lose the post."""

    text: str = ""
    created_at: str = ""
    facets: list[Any] = []
    reply: Any = None
    embed: dict[str, Any] | None = None


def facets_of(record: PostRecord) -> list[Facet]:
    good = []
    for raw in record.facets:
        try:
            good.append(msgspec.convert(raw, Facet))
        except msgspec.ValidationError:
            continue
    return good


def reply_of(record: PostRecord) -> ReplyRef | None:
    if record.reply is None:
        return None
    try:
        return msgspec.convert(record.reply, ReplyRef)
    except msgspec.ValidationError:
        return None


class ProfileBasic(msgspec.Struct, rename="camel"):
    did: str
    handle: str = ""
    display_name: str = ""
    avatar: str = ""


class PostView(msgspec.Struct, rename="camel"):
    uri: str
    cid: str
    author: ProfileBasic
    record: PostRecord
    indexed_at: str = ""
    embed: dict[str, Any] | None = None


class Reason(msgspec.Struct, rename="camel"):
    type: str = msgspec.field(default="", name="$type")
    by: ProfileBasic | None = None
    indexed_at: str = ""


class FeedViewPost(msgspec.Struct):
    post: PostView
    reason: Reason | None = None


class AuthorFeed(msgspec.Struct):
    feed: list[FeedViewPost] = []
    cursor: str | None = None


class SearchResult(msgspec.Struct):
    posts: list[PostView] = []
    cursor: str | None = None


class Posts(msgspec.Struct):
    posts: list[PostView] = []


class ResolvedHandle(msgspec.Struct):
    did: str


class Session(msgspec.Struct, rename="camel"):
    access_jwt: str
    refresh_jwt: str
    did: str
    handle: str = ""


class WrittenRecord(msgspec.Struct):
    uri: str
    cid: str = ""


class StoredRecord(msgspec.Struct):
    uri: str
    cid: str = ""
    value: dict[str, Any] = {}


class Empty(msgspec.Struct):
    pass


class UploadedBlob(msgspec.Struct):
    """`com.atproto.repo.uploadBlob`'s answer; the blob ref goes into a record as is."""

    blob: dict[str, Any]


# --- Jetstream ------------------------------------------------------------------------


class JetstreamCommit(msgspec.Struct):
    operation: str
    collection: str
    rkey: str
    rev: str = ""
    record: PostRecord | None = None
    cid: str = ""


class JetstreamEvent(msgspec.Struct):
    did: str
    time_us: int
    kind: str
    commit: JetstreamCommit | None = None
