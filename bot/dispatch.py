"""Outbox → chat send → record delivery, one lane per channel.

Each channel has its own lane, paced at its platform's minimum interval, so a
slow or failing channel never holds up the others. Rows are marked `sending`
before the chat request; after a crash, such rows are looked up on the chat
(by idempotency key) instead of being sent again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence

from bot.clock import Clock
from bot.crashpoints import crashpoint
from bot.errors import ChatError, Outcome
from bot.model import ChannelRef, RichMessage, Tombstone
from bot.protocols import Chat, HealthRecorder
from bot.render import render_digest
from bot.store.base import OutboxItem, Store
from bot.supervise import Supervisor
from bot.tombstones import Retractor

log = logging.getLogger(__name__)

BATCH = 100
RETRY_BASE_S = 2.0
RETRY_MAX_S = 300.0


def chat_network(platform: str) -> str:
    """The health record's network name for a chat platform."""
    return f"chat:{platform}"


PauseHook = Callable[[OutboxItem, str], Awaitable[None]]


class _Lane:
    __slots__ = ("items", "last_send", "task")

    def __init__(self) -> None:
        self.items: deque[OutboxItem] = deque()
        self.task: asyncio.Task[None] | None = None
        self.last_send = float("-inf")


class Dispatcher:
    def __init__(
        self,
        store: Store,
        chats: Mapping[str, Chat],
        clock: Clock,
        supervisor: Supervisor,
        on_permanent_failure: PauseHook,
        *,
        digest_threshold: int = 0,
        digest_max_items: int = 25,
        health: HealthRecorder | None = None,
        on_upstream_delete: str = "delete",
    ) -> None:
        self._store = store
        self._chats = chats
        self._clock = clock
        self._supervisor = supervisor
        self._on_permanent_failure = on_permanent_failure
        self._health = health
        self._digest_threshold = digest_threshold
        self._digest_max_items = digest_max_items
        self._lanes: dict[int, _Lane] = {}
        self._platform_next: dict[str, float] = {}  # next free slot per platform
        self._waiters: dict[int, asyncio.Future[bool]] = {}
        self.delivered = 0
        self.retractor = Retractor(store, chats, clock, supervisor, mode=on_upstream_delete)

    def submit(self, items: list[OutboxItem]) -> list[asyncio.Future[bool]]:
        """Queue rows already durable in the outbox; futures resolve when recorded."""
        loop = asyncio.get_running_loop()
        futures = []
        for item in items:
            queued = self._waiters.get(item.id)
            if queued is not None and not queued.done():
                futures.append(queued)  # already in a lane: never send a row twice
                continue
            future: asyncio.Future[bool] = loop.create_future()
            self._waiters[item.id] = future
            futures.append(future)
            lane = self._lanes.get(item.channel_id)
            if lane is None:
                lane = self._lanes[item.channel_id] = _Lane()
            lane.items.append(item)
            if lane.task is None or lane.task.done():
                lane.task = self._supervisor.spawn(
                    self._run_lane(item.channel_id, lane), name=f"lane-{item.channel_id}"
                )
        return futures

    def edit(self, channel: ChannelRef, message_ref: str, message: RichMessage) -> None:
        """Edit a delivered message (its post changed upstream); best effort, logged."""
        chat = self._chats.get(channel.platform)
        if chat is None:
            return

        async def apply() -> None:
            try:
                await chat.edit(channel, message_ref, message)
            except Exception:
                log.warning("could not edit message %s in %s", message_ref, channel.native_id,
                            exc_info=True)  # fmt: skip

        self._supervisor.spawn(apply(), name=f"edit-{message_ref}")

    async def recover(self) -> int:
        """Resume the outbox after a (re)start; returns how many rows were requeued."""
        pending = await self._store.pending_outbox()
        resend: list[OutboxItem] = []
        found: list[tuple[OutboxItem, str]] = []
        digests: dict[str, str | None] = {}
        for item in pending:
            chat = self._chats.get(item.channel.platform)
            if chat is None:
                continue  # platform not configured in this run; keep the row for later
            ref = None
            if item.state == "sending" and item.digest_key:
                if item.digest_key not in digests:
                    digests[item.digest_key] = await chat.find_sent(item.channel, item.digest_key)
                ref = digests[item.digest_key]
            elif item.state == "sending":
                ref = await chat.find_sent(item.channel, item.key)
            if ref is not None:
                found.append((item, ref))
            else:
                resend.append(item)
        await self.retractor.recover()
        if found:
            await self._store.record_deliveries(found)
            log.info("recovered %d deliveries sent before a crash", len(found))
            await self.retractor.delivered_late([item.post_uid for item, _ in found])
        self.submit(resend)
        return len(resend)

    async def retract(self, deleted: Sequence[Tombstone]) -> None:
        """Posts deleted upstream: unsent rows are dropped, sent messages retracted."""
        uids = {t.uid for t in deleted}
        if not uids:
            return
        # `retractor.retract` remembers them before its first await, so no send can fail
        # and be re-queued between this walk and the check of `retractor.deleted`.
        for lane in self._lanes.values():
            if any(item.post_uid in uids for item in lane.items):
                kept = [item for item in lane.items if item.post_uid not in uids]
                for item in lane.items:
                    if item.post_uid in uids:
                        self._settled(item.id, True)  # gone for good: the cursor may move
                lane.items.clear()
                lane.items.extend(kept)
        await self.retractor.retract(sorted(uids), held=set(self._waiters))

    async def _threaded(self, item: OutboxItem, batch_refs: Mapping[str, str]) -> RichMessage:
        """A reply goes under its parent's message in this channel, when the parent
        was relayed here (looked up in the deliveries, so it works after a restart)."""
        message = item.message
        parent = batch_refs.get(message.reply_to) or await self._store.thread_ref(
            item.channel_id, message.reply_to
        )
        return dataclasses.replace(message, thread_ref=parent) if parent else message

    def _settled(self, item_id: int, ok: bool) -> None:
        waiter = self._waiters.pop(item_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(ok)

    def queued(self) -> int:
        return sum(len(lane.items) for lane in self._lanes.values())

    @property
    def waiting(self) -> int:
        """Rows submitted and not yet recorded or given up on (cheap: no lane walk)."""
        return len(self._waiters)

    async def drain(self) -> None:
        """Wait until every queued row is delivered or deferred."""
        while True:
            tasks = [
                lane.task for lane in self._lanes.values() if lane.task and not lane.task.done()
            ]
            if not tasks:
                return
            await asyncio.wait(tasks)

    async def _run_lane(self, channel_id: int, lane: _Lane) -> None:
        while lane.items:
            chat = self._chats[lane.items[0].channel.platform]
            wait = lane.items[0].not_before - self._clock.now().timestamp()
            if wait > 0:
                await self._clock.sleep(wait)
            gap = lane.last_send + chat.min_interval_s - self._clock.monotonic()
            if gap > 0:
                await self._clock.sleep(gap)
            if self._digest_threshold and len(lane.items) >= self._digest_threshold:
                await self._send_digest(chat, lane)
                continue
            size = 1 if chat.min_interval_s > 0 else BATCH
            batch = [lane.items.popleft() for _ in range(min(size, len(lane.items)))]
            await self._store.mark_sending([item.id for item in batch])
            delivered: list[tuple[OutboxItem, str]] = []
            refs: dict[str, str] = {}  # post uid → message ref, for replies in this batch
            for index, item in enumerate(batch):
                message = item.message
                if message.reply_to:
                    message = await self._threaded(item, refs)
                await self._platform_slot(chat)
                started = self._clock.monotonic()
                try:
                    ref = await chat.send(item.channel, message, item.key)
                except ChatError as err:
                    self._record(chat, err.outcome, started, str(err))
                    await self._failed(lane, item, err, batch[index + 1 :])
                    break
                except Exception as err:  # a plugin bug must not kill the lane
                    log.exception("chat %s failed to send", chat.name)
                    self._record(chat, Outcome.HTTP_5XX, started, str(err))
                    await self._failed(lane, item, ChatError(str(err)), batch[index + 1 :])
                    break
                self._record(chat, Outcome.OK, started)
                # From the start of the send: a library that itself waited out a
                # rate-limit window inside `send` must not make us wait twice.
                lane.last_send = started
                crashpoint("after_send")
                delivered.append((item, ref))
                refs[item.post_uid] = ref
            if delivered:
                await self._recorded(delivered)
        self._lanes.pop(channel_id, None)

    async def _platform_slot(self, chat: Chat) -> None:
        """Keep a whole platform under its global rate (Discord: 50 requests/s), when the
        chat declares one with an optional `max_rate_per_s`; channels share the budget."""
        rate = float(getattr(chat, "max_rate_per_s", 0.0) or 0.0)
        if rate <= 0:
            return
        now = self._clock.monotonic()
        slot = max(now, self._platform_next.get(chat.name, now))
        self._platform_next[chat.name] = slot + 1.0 / rate
        if slot > now:
            await self._clock.sleep(slot - now)

    def _record(self, chat: Chat, outcome: Outcome, started: float, detail: str = "") -> None:
        """Chat platforms are upstreams too: their failures feed the outage watch."""
        if self._health is not None:
            self._health.record(
                chat_network(chat.name), chat.name, outcome,
                latency_s=self._clock.monotonic() - started, detail=detail,
            )  # fmt: skip

    async def _recorded(self, delivered: list[tuple[OutboxItem, str]]) -> None:
        await self._store.record_deliveries(delivered)
        crashpoint("after_record")
        self.delivered += len(delivered)
        for item, _ in delivered:
            self._settled(item.id, True)
        gone = self.retractor.deleted
        if gone and (late := [i.post_uid for i, _ in delivered if i.post_uid in gone]):
            await self.retractor.delivered_late(late)  # deleted upstream while it was sent

    async def _send_digest(self, chat: Chat, lane: _Lane) -> None:
        """A burst becomes one message listing its posts, instead of a flood."""
        count = min(self._digest_max_items, len(lane.items))
        batch = [lane.items.popleft() for _ in range(count)]
        first = batch[0]
        key = f"starling-digest:{first.channel_id}:{first.id}"
        await self._store.mark_sending([item.id for item in batch], digest_key=key)
        await self._platform_slot(chat)
        started = self._clock.monotonic()
        try:
            ref = await chat.send(first.channel, render_digest([i.message for i in batch]), key)
        except Exception as err:
            if not isinstance(err, ChatError):
                log.exception("chat %s failed to send a digest", chat.name)
                err = ChatError(str(err))
            self._record(chat, err.outcome, started, str(err))
            # Put the burst back; the retry sends it again as a digest.
            for later in reversed(batch[1:]):
                lane.items.appendleft(later)
            await self._failed(lane, first, err, [])
            return
        self._record(chat, Outcome.OK, started)
        lane.last_send = started
        crashpoint("after_send")
        await self._recorded([(item, ref) for item in batch])

    async def _failed(
        self, lane: _Lane, item: OutboxItem, err: ChatError, unsent: list[OutboxItem]
    ) -> None:
        # Rows after the failed one go back first, in order, so the channel keeps its order.
        for later in reversed(unsent):
            lane.items.appendleft(later)
        if err.permanent:
            log.warning("channel %s refused delivery: %s", item.channel.native_id, err)
            await self._store.defer(item.id, float("inf"), str(err))
            await self._on_permanent_failure(item, str(err))
            self._settled(item.id, False)
            return
        delay = err.retry_after_s or min(RETRY_BASE_S * 2**item.attempts, RETRY_MAX_S)
        not_before = self._clock.now().timestamp() + delay
        await self._store.defer(item.id, not_before, str(err))
        if item.post_uid in self.retractor.deleted:
            # Deleted upstream while it was being sent: drop it (and its row) for good.
            self._settled(item.id, True)
            await self.retractor.retract([item.post_uid], held=set(self._waiters))
            return
        log.info("delivery to %s deferred %.0f s: %s", item.channel.native_id, delay, err)
        retry = OutboxItem(
            item.id,
            item.channel_id,
            item.channel,
            item.subscription_id,
            item.post_uid,
            item.message,
            "pending",
            item.attempts + 1,
            not_before,
        )
        lane.items.appendleft(retry)
