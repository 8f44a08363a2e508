"""The neutral data model shared by the core and every plugin.

Nothing here knows a network or a chat platform by name: plugins fill these in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Author:
    name: str
    handle: str = ""
    url: str = ""
    avatar_url: str = ""


@dataclass(frozen=True, slots=True)
class Media:
    url: str
    kind: str = "image"
    alt: str = ""


@dataclass(frozen=True, slots=True)
class Post:
    """One upstream item, already converted to plain text by its source plugin.

    `text` is untrusted: it came from the internet. Rendering neutralises it.
    """

    network: str
    native_id: str
    author: Author
    text: str
    permalink: str = ""
    title: str = ""
    links: tuple[str, ...] = ()
    media: tuple[Media, ...] = ()
    created_at: datetime | None = None
    edited_at: datetime | None = None
    is_reply: bool = False
    is_repost: bool = False
    is_quote: bool = False
    reply_to_id: str = ""  # the parent's native id, so a reply can join its parent's thread

    @property
    def uid(self) -> str:
        """Identity across routes: the same post seen by a follow and a search has one uid."""
        return f"{self.network}:{self.native_id}"

    @property
    def parent_uid(self) -> str:
        """The parent's uid ("" when this is no reply or the parent is unknown)."""
        return f"{self.network}:{self.reply_to_id}" if self.reply_to_id else ""


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A post deleted upstream: only its identity, since its content is gone."""

    network: str
    native_id: str

    @property
    def uid(self) -> str:
        return f"{self.network}:{self.native_id}"


class TargetKind(enum.StrEnum):
    ACCOUNT = "account"
    SEARCH = "search"


@dataclass(frozen=True, slots=True)
class Target:
    """An upstream resource a source can fetch: an account, a feed, or a search."""

    network: str
    kind: TargetKind
    key: str
    display: str = ""

    @property
    def resource_key(self) -> str:
        return f"{self.network}:{self.kind.value}:{self.key}"


@dataclass(frozen=True, slots=True)
class Filters:
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    regex: str = ""
    skip_replies: bool = False
    skip_reposts: bool = False

    def describe(self) -> str:
        parts = [f"+{w}" for w in self.include] + [f"-{w}" for w in self.exclude]
        if self.regex:
            parts.append(f"/{self.regex}/")
        if self.skip_replies:
            parts.append("no replies")
        if self.skip_reposts:
            parts.append("no reposts")
        return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class ChannelRef:
    """A chat channel, as its platform names it."""

    platform: str
    native_id: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    channel: ChannelRef
    target: Target
    filters: Filters = field(default_factory=Filters)
    interval_s: float = 300.0
    created_by: str = ""
    created_at: datetime | None = None
    paused_reason: str = ""
    mirror_of: int | None = None  # stands in for that subscription while its network is down


@dataclass(frozen=True, slots=True)
class Delivery:
    """Which chat message carried which post; kept so edits and threads work after a restart."""

    channel: ChannelRef
    post_uid: str
    message_ref: str
    delivered_at: datetime


@dataclass(frozen=True, slots=True)
class Action:
    """A button under a message: clicking it runs `/command args` as the member who clicked.

    Chats encode `command` and `args` in the button itself, so a click still works after
    a restart, and the core checks the clicker's permissions like for a typed command.
    `style` is "", "primary" or "danger".
    """

    label: str
    command: str
    args: str = ""
    style: str = ""


@dataclass(frozen=True, slots=True)
class RichMessage:
    """What every chat plugin renders into its own format (Block Kit, embeds, console lines)."""

    text: str
    title: str = ""
    author: str = ""
    author_url: str = ""
    avatar_url: str = ""
    link: str = ""
    images: tuple[Media, ...] = ()
    footer: str = ""
    network: str = ""
    timestamp: datetime | None = None
    reply_to: str = ""  # the parent post's uid, when this post answers one
    thread_ref: str = ""  # the parent's message in this channel; set at send time
    actions: tuple[Action, ...] = ()  # buttons (approve, reject, delete)


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one fetch of a target returned.

    `cursor` is opaque to the core; the source reads it back on the next fetch.
    Posts may come in any order; the pipeline sorts them oldest first.
    """

    posts: list[Post]
    cursor: str | None
    not_modified: bool = False
    retry_after_s: float | None = None
    deleted: tuple[Tombstone, ...] = ()  # posts the source saw deleted upstream
