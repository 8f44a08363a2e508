"""The store interface every backend implements, and the rows it trades in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.model import ChannelRef, Filters, RichMessage, Subscription, Target
from bot.protocols import Draft


@dataclass(frozen=True, slots=True)
class StoredResource:
    id: int
    target: Target
    cursor: str | None


@dataclass(frozen=True, slots=True)
class NewOutboxRow:
    channel_id: int
    subscription_id: int
    post_uid: str
    message: RichMessage
    fingerprint: str = ""  # recorded for mirror groups, so a cross-post arrives once


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    channel_id: int
    channel: ChannelRef
    subscription_id: int
    post_uid: str
    message: RichMessage
    state: str
    attempts: int
    not_before: float
    digest_key: str = ""

    @property
    def key(self) -> str:
        """Idempotency key the chat plugin stores with the message it sends."""
        return f"starling:{self.channel_id}:{self.post_uid}"


@dataclass(frozen=True, slots=True)
class HealthMinute:
    network: str
    host: str
    minute: int
    outcome: str
    count: int
    latency_sum: float


@dataclass(frozen=True, slots=True)
class HealthDay:
    """One network's outcome count for one UTC day (`day`: days since the epoch)."""

    network: str
    day: int
    outcome: str
    count: int
    latency_sum: float


@dataclass(frozen=True, slots=True)
class HealthHost:
    network: str
    host: str
    last_outcome: str
    last_status: int | None
    last_detail: str
    last_ok_at: float | None
    last_failure_at: float | None
    consecutive_failures: int


@dataclass(frozen=True, slots=True)
class StoredNotice:
    channel_id: int
    channel: ChannelRef
    message_ref: str
    affected: int


@dataclass(frozen=True, slots=True)
class StoredOutage:
    id: int
    network: str
    host: str
    started_at: float
    ended_at: float | None
    detail: str
    caught_up: int
    notices: tuple[StoredNotice, ...] = ()


@dataclass(frozen=True, slots=True)
class PostTarget:
    network: str
    state: str  # pending, sent, failed, deleted
    attempts: int = 0
    native_id: str = ""
    url: str = ""
    error: str = ""
    not_before: float = 0.0
    parts: tuple[str, ...] = ()  # native ids published so far, for a thread


@dataclass(frozen=True, slots=True)
class Postback:
    id: int
    channel_id: int
    channel: ChannelRef
    author: str
    draft: Draft
    state: str  # awaiting_approval, approved, rejected, undone
    created_at: float
    decided_by: str = ""
    decided_at: float | None = None
    request_ref: str = ""
    targets: tuple[PostTarget, ...] = ()
    thread: bool = False  # split into a reply chain where a network's limit needs it


@dataclass(frozen=True, slots=True)
class Retraction:
    """A chat message whose post was deleted upstream, still to be removed or marked."""

    channel_id: int
    channel: ChannelRef
    post_uid: str
    message_ref: str
    attempts: int = 0


class Store(Protocol):
    async def close(self) -> None: ...

    async def ensure_channel(self, channel: ChannelRef) -> int: ...

    async def find_resource(self, target: Target) -> StoredResource | None: ...

    async def create_subscription(
        self,
        channel: ChannelRef,
        target: Target,
        filters: Filters,
        interval_s: float,
        created_by: str,
        baseline_keys: Sequence[str],
        backlog: Callable[[Subscription, int], list[NewOutboxRow]],
        cursor: str | None,
        mirror_of: int | None = None,
    ) -> tuple[Subscription, list[OutboxItem]]:
        """Store a subscription atomically with its resource's baseline and any backlog rows.

        `baseline_keys` are marked seen only when the resource is new, so a feed's
        history never floods the channel and other subscribers lose nothing.
        """
        ...

    async def remove_subscription(
        self, channel: ChannelRef, sub_id: int
    ) -> Subscription | None: ...

    async def list_subscriptions(self, channel: ChannelRef | None = None) -> list[Subscription]: ...

    async def subscriptions_for(self, resource_id: int) -> list[tuple[Subscription, int]]:
        """Active subscriptions of a resource, each with its channel's row id."""
        ...

    async def active_resources(self) -> list[StoredResource]: ...

    def load_followers(self) -> AsyncIterator[list[tuple[StoredResource, Subscription, int]]]:
        """Every active subscription with its resource and channel row id, in one query,
        ordered by resource (a resource's subscriptions come one after the other).

        Yielded in chunks: a caller that keeps a lean copy of each row lets the chunk's
        objects go before the next one is read, so 100,000 rows never exist at once.
        """
        ...

    async def admit(
        self,
        resource_id: int,
        keys: Sequence[str],
        build: Callable[[set[str]], list[NewOutboxRow]],
        versions: Mapping[str, str] | None = None,
    ) -> list[OutboxItem]:
        """Dedupe `keys` and queue the outbox rows built for the new ones, in one transaction.

        `versions` (key → edited time) are stored with new keys, for `edited`.
        """
        ...

    async def edited(
        self, resource_id: int, versions: Mapping[str, str]
    ) -> list[tuple[str, list[tuple[ChannelRef, str]]]]:
        """Record new versions; for posts whose version changed, the chat messages to edit."""
        ...

    async def set_cursor(self, resource_id: int, cursor: str | None) -> None: ...

    async def mirror_prints(self, channel_ids: Sequence[int], since: float) -> set[tuple[int, str]]:
        """(channel, fingerprint) pairs a mirror group delivered since `since`."""
        ...

    async def pending_outbox(self) -> list[OutboxItem]: ...

    async def mark_sending(self, ids: Sequence[int], digest_key: str = "") -> None:
        """Mark rows as handed to the chat; rows sent as one digest share `digest_key`."""
        ...

    async def record_deliveries(self, delivered: Sequence[tuple[OutboxItem, str]]) -> None:
        """Move delivered rows from the outbox to the deliveries record, atomically."""
        ...

    async def defer(self, item_id: int, not_before: float, error: str) -> None: ...

    async def pause_subscription(self, sub_id: int, reason: str) -> None: ...

    async def resume_subscription(self, channel: ChannelRef, sub_id: int) -> Subscription | None:
        """Unpause; its waiting outbox rows become due again."""
        ...

    async def outbox_depth(self) -> int: ...

    async def save_health(
        self,
        minutes: Sequence[HealthMinute],
        hosts: Sequence[HealthHost],
        days: Sequence[HealthDay] = (),
    ) -> None:
        """One health flush in one transaction: per-minute counts, hosts and per-day
        counts (summed with what is there); old rows are pruned on the way."""
        ...

    async def load_health_hosts(self) -> list[HealthHost]: ...

    async def health_minutes(self, since_minute: int) -> list[HealthMinute]:
        """Per-minute outcome counts since `since_minute` (for timelines and rates)."""
        ...

    async def open_outage(self, network: str, host: str, started_at: float, detail: str) -> int: ...

    async def add_outage_notice(
        self, outage_id: int, channel_id: int, message_ref: str, affected: int
    ) -> None: ...

    async def close_outage(self, outage_id: int, ended_at: float, caught_up: int) -> None: ...

    async def load_open_outages(self) -> list[StoredOutage]: ...

    async def recent_outages(self, limit: int) -> list[StoredOutage]: ...

    async def create_postback(
        self,
        channel: ChannelRef,
        author: str,
        draft: Draft,
        networks: Sequence[str],
        state: str,
        *,
        thread: bool = False,
    ) -> Postback:
        """Store the post and one pending target per network before anything is sent."""
        ...

    async def get_postback(self, postback_id: int) -> Postback | None: ...

    async def decide_postback(
        self, postback_id: int, state: str, by: str, expected: str
    ) -> Postback | None:
        """Move a post from `expected` to `state`; None when it was no longer `expected`
        (a double click, or another approver first)."""
        ...

    async def set_request_ref(self, postback_id: int, message_ref: str) -> None: ...

    async def update_target(self, postback_id: int, network: str, **changes: object) -> None: ...

    async def add_target(self, postback_id: int, network: str) -> None: ...

    async def postbacks_to_send(self) -> list[Postback]:
        """Approved posts with targets still pending."""
        ...

    async def last_postback(self, channel: ChannelRef, author: str) -> Postback | None: ...

    async def postbacks_since(self, author: str, since: float) -> int: ...

    async def retract(
        self, uids: Sequence[str], *, known_only: bool = False, held: Collection[int] = ()
    ) -> list[Retraction]:
        """Posts deleted upstream: in one transaction, remember them (tombstones), drop
        their rows still waiting in the outbox (except the `held` row ids a sender has in
        hand), and queue a retraction for each message that carried one (digests
        excepted). Returns only retractions not queued before, so a repeated delete does
        nothing. `known_only`: only uids already tombstoned, nothing dropped (for
        deliveries recorded after their post's delete arrived)."""
        ...

    async def pending_retractions(self) -> list[Retraction]: ...

    async def settle_retraction(
        self, channel_id: int, post_uid: str, *, done: bool, error: str = ""
    ) -> None:
        """Mark a retraction done, or count a failed attempt and keep it pending."""
        ...

    async def thread_ref(self, channel_id: int, post_uid: str) -> str | None:
        """The message that carried `post_uid` in this channel, to reply under; None when
        it was not delivered there, went out in a digest, or was retracted."""
        ...

    async def save_installation(
        self, platform: str, enterprise_id: str, team_id: str, data: Mapping[str, object]
    ) -> None:
        """Keep (or replace) a chat app's installation in one workspace; '' for none."""
        ...

    async def find_installation(
        self, platform: str, enterprise_id: str | None, team_id: str
    ) -> dict[str, object] | None:
        """The installation saved for this team (and enterprise; None: any), or None."""
        ...

    async def delete_installation(self, platform: str, enterprise_id: str, team_id: str) -> bool:
        """Forget an installation (uninstalled, tokens revoked); True if there was one."""
        ...

    async def plugin_state_get(self, namespace: str, key: str) -> str | None:
        """A plugin's stored value for `key`, or None."""
        ...

    async def plugin_state_put(self, namespace: str, key: str, value: str | None) -> None:
        """Store (committed before returning) or, with None, forget a plugin's value."""
        ...

    async def plugin_state_prune(self, namespace: str, before: float) -> int:
        """Forget a plugin's values last written before `before` (epoch s); how many."""
        ...

    async def health_days(self, since_day: int) -> list[HealthDay]:
        """Per network, day and outcome since `since_day`: the status page's 30 days,
        a few hundred rows however many hosts there are."""
        ...
