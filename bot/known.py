"""Posts the relay already holds durably, so a source may skip rebuilding them.

Why: a changed feed document still lists the items of the last poll (typically 9
of 10), and turning each into a `Post` (HTML to text, URLs, authors) was most of
the CPU of a poll. The relay admits by key and never renders a post it has seen
with the same version, so for those a source may return a *placeholder*: the same
network, id and dates, nothing else. While the relay polls a resource it publishes
what the last successfully admitted fetch of that resource returned; a source reads
it from `known_posts`. The relay never renders a placeholder: if one turns out to
be new after all (its dedupe row was pruned, a hash collided) it fetches again
without placeholders.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from datetime import datetime

from bot.model import Author, Post

_PLACEHOLDER_AUTHOR = Author(name="")  # identity marks a placeholder (see `is_placeholder`)


def _digest(uid: str, edited_at: datetime | None) -> bytes:
    return hash((uid, edited_at)).to_bytes(8, "little", signed=True)


def pack(posts: Iterable[Post]) -> bytes:
    """A compact record of posts (8 bytes each: 100,000 resources fit in a few MB)."""
    return b"".join(_digest(post.uid, post.edited_at) for post in posts)


class KnownPosts:
    """Membership test over what `pack` recorded."""

    __slots__ = ("_digests",)

    def __init__(self, packed: bytes) -> None:
        self._digests = {packed[i : i + 8] for i in range(0, len(packed), 8)}

    def __contains__(self, key: tuple[str, datetime | None]) -> bool:
        """`(post.uid, post.edited_at) in known`."""
        return _digest(*key) in self._digests


known_posts: ContextVar[KnownPosts | None] = ContextVar("known_posts", default=None)


def placeholder(
    network: str, native_id: str, created_at: datetime | None, edited_at: datetime | None
) -> Post:
    """A post the relay already has: identity and dates only."""
    return Post(
        network=network,
        native_id=native_id,
        author=_PLACEHOLDER_AUTHOR,
        text="",
        created_at=created_at,
        edited_at=edited_at,
    )


def is_placeholder(post: Post) -> bool:
    return post.author is _PLACEHOLDER_AUTHOR
