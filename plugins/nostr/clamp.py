"""Which relays cut an answer short below the `limit` asked for, learned as they answer.

A relay answers a REQ with the newest `limit` stored events, but many clamp `limit`
to a maximum of their own (often 500–5,000), and NIP-11 does not always say which
(nostr-relay clamps to its `max_limit` without publishing it). A batch that gets
fewer notes than its `limit` may therefore still be cut short, silently. So the
first time a relay sends a batch answer larger than any it has been seen to send
whole, it is asked once more, below the oldest note it sent: a note found there
proves that the relay cuts at that size. From then on batches ask it for no more,
and an answer of that size is treated as cut short (the batch is asked again one
follow at a time, as for any full answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from plugins.nostr.events import Event
from plugins.nostr.targets import NOTE_KINDS


class ClampBook:
    """Per relay host: the largest answer seen whole, and the size it cuts at."""

    def __init__(self) -> None:
        self._whole: dict[str, int] = {}
        self._cuts_at: dict[str, int] = {}

    def limit(self, wanted: int) -> int:
        """`wanted`, or less where a relay is known to cut there (one REQ goes to all)."""
        return min([wanted, *self._cuts_at.values()])

    def needs_probe(self, host: str, received: int, limit: int) -> bool:
        """Whether an answer of `received` notes (fewer than `limit`) may be cut short."""
        return 0 < received < limit and received > self._whole.get(host, 0)

    def learn(self, host: str, received: int, *, cut: bool) -> None:
        if cut:
            self._cuts_at[host] = min(received, self._cuts_at.get(host, received))
        else:
            self._whole[host] = max(received, self._whole.get(host, 0))


def probe_filters(
    filters: Sequence[dict[str, Any]], notes: Sequence[Event]
) -> list[dict[str, Any]]:
    """`filters` again, below the oldest of `notes` (`until` is inclusive): room for one
    note more than those already sent at that second."""
    oldest = min(event.created_at for event in notes)
    same_second = sum(event.created_at == oldest for event in notes)
    return [{**f, "until": oldest, "limit": same_second + 1} for f in filters]


def found_more(probed: Sequence[Event], sent: Sequence[Event]) -> bool:
    """Whether the probe brought a note, no newer than the oldest sent, that the first
    answer did not have."""
    oldest = min(event.created_at for event in sent)
    seen = {event.id for event in sent}
    return any(
        event.id not in seen and event.kind in NOTE_KINDS and event.created_at <= oldest
        for event in probed
    )
