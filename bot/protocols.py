"""The small typed contracts plugins implement.

A network plugin offers a `Source` (and later a `Publisher`); a chat plugin is a
`Chat`. Plugins are found through the entry-point groups `starling.networks` and
`starling.chats`; each entry point names a factory taking a `PluginContext`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, runtime_checkable

from bot.clock import Clock
from bot.errors import Outcome
from bot.model import (
    Action,
    ChannelRef,
    FetchResult,
    Post,
    RichMessage,
    Target,
    TargetKind,
    Tombstone,
)
from bot.pluginstate import MemoryState, PluginState


class HealthRecorder(Protocol):
    """Where plugins report every upstream request outcome."""

    def record(
        self,
        network: str,
        host: str,
        outcome: Outcome,
        *,
        latency_s: float = 0.0,
        status: int | None = None,
        detail: str = "",
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class PluginContext:
    """Everything a plugin may use; handed in, never reached through a global."""

    name: str
    config: Mapping[str, Any]
    health: HealthRecorder
    clock: Clock
    allow_private_addresses: bool
    data_dir: str
    # Key-value state in the store, namespaced by plugin; in memory unless the app wires it.
    state: PluginState = field(default_factory=MemoryState)


@runtime_checkable
class Source(Protocol):
    """Reads one network: resolves what a member asked to follow, then fetches it.

    Optional attribute the core honours when present: `reads_known_posts = True` makes
    the relay publish `bot.known.known_posts` during `fetch` (posts it already holds may
    come back as placeholders); other sources pay nothing for it.
    """

    async def resolve(self, kind: TargetKind, query: str) -> Target:
        """Turn chat input into a canonical target; raise `UserError` with a one-line reason."""
        ...

    async def fetch(self, target: Target, cursor: str | None) -> FetchResult:
        """Fetch what is new since `cursor`; raise `UpstreamError` on failure."""
        ...


class PostSink(Protocol):
    """Where a stream hands what it read: new or edited posts under `target`, the cursor
    after them, and `deleted` (posts removed upstream; they need no target or position,
    so a call carrying only deletions leaves the cursor where it was)."""

    def __call__(
        self,
        target: Target,
        posts: list[Post],
        cursor: str | None,
        /,
        *,
        deleted: Sequence[Tombstone] = (),
    ) -> Awaitable[None]: ...


@runtime_checkable
class StreamingSource(Protocol):
    """A source that can also push posts as they happen (websocket, firehose).

    `stream` runs until cancelled and reconnects by itself; the app restarts it with a
    new target list whenever subscriptions change. The cursor handed to the sink
    becomes the resource's cursor once the posts are delivered, so a source that
    both polls and streams encodes both positions in its one cursor string.
    Polling carries on beside the stream and backfills whatever a drop missed.
    """

    async def stream(
        self, targets: list[Target], cursors: Mapping[str, str | None], sink: PostSink
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class DraftImage:
    """An image for a post: its link as typed and its alt text. Starling downloads it
    once (through the SSRF guard) and hands the bytes to every publisher, so no
    network needs to reach the member's link itself."""

    url: str
    alt: str = ""
    data: bytes = field(default=b"", repr=False, compare=False)
    mime: str = ""


@dataclass(frozen=True, slots=True)
class Draft:
    """A post the team wants published. `reply_to`/`quote_of` are post URLs (or native
    references) the publisher resolves itself."""

    text: str
    reply_to: str = ""
    quote_of: str = ""
    content_warning: str = ""
    images: tuple[DraftImage, ...] = ()


@dataclass(frozen=True, slots=True)
class Preparation:
    """What a network will receive for a draft, or why it cannot take it as is."""

    text: str
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Published:
    native_id: str
    url: str


@runtime_checkable
class Publisher(Protocol):
    """Posts to a network on the team's behalf (driven by the post-back workflow)."""

    async def publish(self, draft: Draft, idempotency_key: str) -> Published: ...

    async def delete(self, native_id: str) -> None: ...


@runtime_checkable
class Preparer(Protocol):
    """Optional beside `Publisher`: the network's own limits (weighted length, graphemes,
    instance limits) checked before anything is sent, and the preview shown."""

    def prepare(self, draft: Draft) -> Preparation: ...


@runtime_checkable
class Network(Protocol):
    """What a `starling.networks` entry-point factory returns.

    Optional attributes the core honours when present: `default_interval_s` and
    `min_interval_s` (gentler polling for costly APIs), `status_lines()` (extra
    figures for /status) with `async refresh_status()` (loads them first), and
    `publisher.account` (shown by /accounts).
    """

    name: str
    aliases: tuple[str, ...]
    description: str
    source: Source | None
    publisher: Publisher | None

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Invocation:
    """A slash command as a member typed it, from any chat platform."""

    channel: ChannelRef
    user: str
    command: str
    args: str
    # The member's Discord role ids or Slack user group ids, as the chat knows them:
    # approval settings may name `role:<id>` or `group:<id>` instead of single members.
    roles: frozenset[str] = frozenset()


class ReplyKind(Enum):
    """What an answer is, for a chat that acts on it (never read from its wording)."""

    ANSWER = "answer"
    PREVIEW = "preview"  # `/post --preview` succeeded: a composer may offer its Post button
    UNDONE = "undone"  # `/undo` removed the post everywhere: its Delete button can go


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to a command. `changed` marks a successful change to the channel's
    subscriptions, so a chat can check it is able to post there."""

    text: str
    ephemeral: bool = True
    changed: bool = False
    actions: tuple[Action, ...] = ()  # buttons under the answer (a Delete after /post)
    kind: ReplyKind = ReplyKind.ANSWER


@dataclass(frozen=True, slots=True)
class Choice:
    """One autocomplete suggestion: what the member sees and what gets filled in."""

    label: str
    value: str


class CommandService(Protocol):
    """What a chat plugin talks to: run a command, or suggest values while typing."""

    async def handle(self, invocation: Invocation) -> Reply: ...

    async def complete(self, channel: ChannelRef, field: str, prefix: str) -> list[Choice]:
        """Suggestions for `field` ("network" or "subscription") starting with `prefix`."""
        ...

    def command_names(self) -> list[str]: ...


@runtime_checkable
class Chat(Protocol):
    """A chat platform: receives commands, sends and edits messages.

    `send` takes an idempotency key; `find_sent` looks it up after a crash between
    sending and recording, so a post is never shown twice. `min_interval_s` paces each
    channel; an optional `max_rate_per_s` caps the whole platform.
    """

    name: str
    min_interval_s: float

    async def run(self, commands: CommandService) -> None:
        """Receive commands until the platform disconnects or input ends."""
        ...

    async def send(self, channel: ChannelRef, message: RichMessage, key: str) -> str: ...

    async def edit(self, channel: ChannelRef, message_ref: str, message: RichMessage) -> None: ...

    async def find_sent(self, channel: ChannelRef, key: str) -> str | None: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Deleter(Protocol):
    """Optional beside `Chat`: remove a message Starling sent (its post was deleted
    upstream). A message that is already gone counts as removed. A reply sent with
    `RichMessage.thread_ref` goes into that message's thread, or answers it."""

    async def delete(self, channel: ChannelRef, message_ref: str) -> None: ...


CommandHandler = Callable[[Invocation], Awaitable[Reply]]
NetworkFactory = Callable[[PluginContext], Network]
ChatFactory = Callable[[PluginContext], Chat]
