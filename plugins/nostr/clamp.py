"""Which relays cut an answer short below the `limit` asked for, learned as they answer.

A relay answers a REQ with the newest `limit` stored events, but many clamp `limit`
to a maximum of their own (often 500–5,000), and NIP-11 does not always say which
(nostr-relay clamps to its `max_limit` without publishing it). Some apply `limit` to
each filter (NIP-01, strfry), some to the whole REQ (nostr-relay). A batch that gets
fewer notes than its `limit` may therefore still be cut short, silently.

So the first time a relay sends an answer larger than any it has been seen to send
whole (per filter or in all), each filter is asked once more, below the oldest note
it matched: a note found there proves that the relay cuts at that size. From then on
an answer of that size from that relay counts as cut short, and the batch is asked
again one follow at a time, as for any full answer. Nothing is asked for less: a
wrong lesson (a note that reached the relay between the answer and the probe) costs
only extra requests, and is forgotten when the relay sends more than it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from plugins.nostr.events import Event

Filter = dict[str, Any]


@dataclass(slots=True)
class _Sizes:
    per_filter: int
    per_request: int


class ClampBook:
    """Per relay URL: the largest answer seen whole, and the sizes it was seen to cut at."""

    def __init__(self) -> None:
        self._whole: dict[str, _Sizes] = {}
        self._cuts: dict[str, _Sizes] = {}

    def known_cut(self, url: str, counts: Sequence[int]) -> bool:
        """Whether an answer with these notes per filter is as large as a proven cut.

        A relay that sends more than a recorded cut did not cut there: that lesson goes.
        """
        cut = self._cuts.get(url)
        if cut is None:
            return False
        biggest, total = max(counts, default=0), sum(counts)
        if biggest > cut.per_filter:
            cut.per_filter = _NEVER
        if total > cut.per_request:
            cut.per_request = _NEVER
        if cut.per_filter == cut.per_request == _NEVER:
            del self._cuts[url]
            return False
        return biggest >= cut.per_filter or total >= cut.per_request

    def needs_probe(self, url: str, counts: Sequence[int]) -> bool:
        """Whether the answer is larger than any this relay has been seen to send whole."""
        whole = self._whole.get(url, _Sizes(0, 0))
        return max(counts, default=0) > whole.per_filter or sum(counts) > whole.per_request

    def learn(self, url: str, counts: Sequence[int], *, cut_at: int | None) -> None:
        """What a probe showed: `cut_at` is the notes the cut filter had, else None."""
        biggest, total = max(counts, default=0), sum(counts)
        if cut_at is None:
            whole = self._whole.setdefault(url, _Sizes(0, 0))
            whole.per_filter = max(whole.per_filter, biggest)
            whole.per_request = max(whole.per_request, total)
            return
        cut = self._cuts.setdefault(url, _Sizes(_NEVER, _NEVER))
        cut.per_filter = min(cut.per_filter, cut_at)
        cut.per_request = min(cut.per_request, total)


_NEVER = 1 << 62


def matched(note_filter: Filter, event: Event) -> bool:
    """Whether the relay sent `event` for this merged `authors` or `#t` filter."""
    if event.kind not in note_filter.get("kinds", ()):
        return False
    if event.created_at < note_filter.get("since", 0):
        return False
    if "authors" in note_filter:
        return event.pubkey in note_filter["authors"]
    tags = note_filter.get("#t", ())
    return any(value.lower() in tags for value in event.tag_values("t"))


def probe_filter(note_filter: Filter, notes: Sequence[Event]) -> Filter:
    """`note_filter` again, below the oldest of the `notes` it matched (`until` is
    inclusive): room for one note more than those already sent at that second."""
    oldest = min(event.created_at for event in notes)
    same_second = sum(event.created_at == oldest for event in notes)
    return {**note_filter, "until": oldest, "limit": same_second + 1}


def found_more(probed: Sequence[Event], note_filter: Filter, sent: Sequence[Event]) -> bool:
    """Whether the probe brought a note of this filter, no newer than the oldest sent,
    that the first answer did not have."""
    oldest = min(event.created_at for event in sent)
    seen = {event.id for event in sent}
    return any(
        event.id not in seen and event.created_at <= oldest and matched(note_filter, event)
        for event in probed
    )
