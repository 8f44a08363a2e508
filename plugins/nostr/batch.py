"""Polls of many follows share one REQ per relay.

The scheduler polls each follow on its own, spread over its interval. Fetches
that arrive within `fetch_batch_window_s` of each other wait for one another
and go out together: followed pubkeys share an `authors` filter and hashtags a
`#t` filter (up to `authors_per_filter` follows a batch), so 2,000 follows cost
a few REQs a minute per relay instead of one each. Every event that comes back
is routed to the follows it really matches, at or after each follow's own
`since`. When a relay sends as many events as the batch's `limit` (it may have
cut the answer short), the batch is asked again one follow at a time, so no
follow loses notes to a busier one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from bot.model import Target
from plugins.nostr.events import Event

# One follow's notes since its own `since`, deduplicated by event id.
Query = Callable[[Sequence["Wanted"]], Awaitable[dict[str, list[Event]]]]


@dataclass(slots=True)
class Wanted:
    """One fetch waiting for its batch."""

    target: Target
    since: int | None
    done: asyncio.Future[list[Event]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class FetchBatcher:
    """Collects fetches for `window_s`, then runs them as batches of at most `size`."""

    def __init__(self, query: Query, *, window_s: float, size: int) -> None:
        self._query = query
        self._window_s = window_s
        self._size = max(1, size)
        self._waiting: list[Wanted] = []
        self._flusher: asyncio.Task[None] | None = None  # the batch still collecting
        self._running: set[asyncio.Task[None]] = set()
        self.batches = 0  # batches sent so far (tests and benchmarks read it)

    async def fetch(self, target: Target, since: int | None) -> list[Event]:
        if self._window_s <= 0:
            self.batches += 1
            return (await self._query([Wanted(target, since)])).get(target.resource_key, [])
        wanted = Wanted(target, since)
        self._waiting.append(wanted)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_later(), name="nostr-fetch-batch")
            self._running.add(self._flusher)  # held until done, after it lets go of _flusher
            self._flusher.add_done_callback(self._running.discard)
        return await asyncio.shield(wanted.done)

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._window_s)
        # Taken together, with no await between: a fetch from now on starts a new batch.
        waiting, self._waiting, self._flusher = self._waiting, [], None
        batches = [waiting[i : i + self._size] for i in range(0, len(waiting), self._size)]
        await asyncio.gather(*(self._run(batch) for batch in batches))

    async def _run(self, batch: list[Wanted]) -> None:
        self.batches += 1
        try:
            found = await self._query(batch)
        except Exception as err:  # every fetch of the batch fails alike (e.g. no relay)
            for wanted in batch:
                if not wanted.done.done():
                    wanted.done.set_exception(err)
            return
        for wanted in batch:
            if not wanted.done.done():
                wanted.done.set_result(found.get(wanted.target.resource_key, []))
