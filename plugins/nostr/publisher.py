"""Posting to nostr: signed kind 1 notes, kind 5 deletions, on every relay.

Idempotency: an event's id is the hash of its fields, so a retry must send the
very same event or relays would store two notes. The first attempt for an
idempotency key writes the signed event to a small journal in the database
before any relay sees it; every retry (after a crash too) resends that event,
and relays answer "duplicate" for the copies they already hold.

Images: nostr has no upload, so a note names the picture's own link, appended to
the text (every client shows it) and described by a NIP-92 `imeta` tag with its
type, alt text and SHA-256, from the copy Starling downloaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

from coincurve import PrivateKey

from bot.clock import Clock
from bot.errors import UserError
from bot.pluginstate import KeyedJournal, PluginState
from bot.protocols import Draft, DraftImage, Published
from plugins.nostr.events import KIND_DELETION, KIND_NOTE, Event, decode_event, sign
from plugins.nostr.keys import InvalidKey, note, parse_event_id
from plugins.nostr.pool import RelayPool
from plugins.nostr.posts import PostBuilder

log = logging.getLogger(__name__)

JOURNAL_FILE = "nostr-published.jsonl"
JOURNAL_KEEP_S = 30 * 86400
MAX_NOTE_CHARS = 16_000
_HASHTAG = re.compile(r"(?:^|(?<=\s))#(\w[\w-]{0,99})")


class Journal(KeyedJournal[Event]):
    """Idempotency key → the signed event first made for it, kept for 30 days.

    Entries `event:<key>` in the plugin's state. Releases before 0008 kept
    `nostr-published.jsonl` in the data dir; it is imported on first use.
    """

    def __init__(self, state: PluginState, legacy_path: Path | None = None) -> None:
        super().__init__(
            state,
            prefix="event:",
            keep_s=JOURNAL_KEEP_S,
            encode=_encode,
            decode=lambda text: decode_event(json.loads(text)),  # NotAnEvent is a ValueError
            legacy=legacy_path,
            read_legacy=_read_legacy,
            label="nostr: event journal",
        )


def _read_legacy(path: Path) -> list[tuple[str, Event, float]]:
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            entries.append((str(row["key"]), decode_event(row["event"]), float(row["at"])))
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line after a crash: that attempt never reached a relay
    return entries


def _encode(event: Event) -> str:
    return json.dumps(event.to_wire(), ensure_ascii=False, separators=(",", ":"))


class NostrPublisher:
    def __init__(
        self,
        *,
        key: PrivateKey,
        pool: RelayPool,
        builder: PostBuilder,
        journal: Journal,
        clock: Clock,
    ) -> None:
        self._key = key
        self._pool = pool
        self._builder = builder
        self._journal = journal
        self._clock = clock

    def _now(self) -> int:
        return int(self._clock.now().timestamp())

    async def publish(self, draft: Draft, idempotency_key: str) -> Published:
        """Sign (once per key) and send a kind 1 note; succeed when a relay holds it."""
        event = await self._journal.get(idempotency_key)
        if event is None:
            event = await self._make_note(draft)
            await self._journal.put(idempotency_key, event)
        await self._pool.publish(event)
        return Published(event.id, self._builder.permalink(event.id, event.pubkey, event.kind))

    async def delete(self, native_id: str) -> None:
        """NIP-09: a kind 5 event asking relays to drop our note."""
        event_id = _event_id(native_id)
        tags = (("e", event_id), ("k", str(KIND_NOTE)))
        deletion = sign(
            self._key, kind=KIND_DELETION, content="", tags=tags, created_at=self._now()
        )
        await self._pool.publish(deletion)

    async def _make_note(self, draft: Draft) -> Event:
        text = draft.text.strip()
        if not text:
            raise UserError("there is nothing to post; write some text")
        if len(text) > MAX_NOTE_CHARS:
            raise UserError(
                f"that is too long for a nostr note ({MAX_NOTE_CHARS} characters at most)"
            )
        tags: list[tuple[str, ...]] = [("t", tag) for tag in hashtags(text)]
        if draft.reply_to:
            tags += await self._reply_tags(_event_id(draft.reply_to))
        if draft.quote_of:
            quoted = _event_id(draft.quote_of)
            tags.append(("q", quoted))
            text = f"{text}\n\nnostr:{note(quoted)}"
        if draft.images:
            tags += [imeta(image) for image in draft.images]
            text += "\n\n" + "\n".join(image.url for image in draft.images)
        return sign(
            self._key, kind=KIND_NOTE, content=text, tags=tuple(tags), created_at=self._now()
        )

    async def _reply_tags(self, parent_id: str) -> list[tuple[str, ...]]:
        """NIP-10 marked e tags (root, reply) and the parent's author as a p tag."""
        parent: Event | None = None
        try:
            answers = await self._pool.query({"parent": [{"ids": [parent_id]}]}, max_events=1)
        except Exception:  # the parent is a nicety: reply anyway, marked as a reply to the root
            log.info("could not look up the note being replied to", exc_info=True)
            answers = []
        for answer in answers:
            for event in answer.events.get("parent", []):
                if event.id == parent_id:
                    parent = event
        if parent is None:
            return [("e", parent_id, "", "root")]
        roots = [t[1] for t in parent.tags if len(t) >= 4 and t[0] == "e" and t[3] == "root"]
        tags: list[tuple[str, ...]] = []
        if roots and roots[0] != parent_id:
            tags += [("e", roots[0], "", "root"), ("e", parent_id, "", "reply")]
        else:
            tags.append(("e", parent_id, "", "root"))
        tags.append(("p", parent.pubkey))
        return tags


def imeta(image: DraftImage) -> tuple[str, ...]:
    """NIP-92 media metadata for an image linked from the note."""
    fields = [f"url {image.url}"]
    if image.mime:
        fields.append(f"m {image.mime}")
    if image.alt:
        fields.append(f"alt {' '.join(image.alt.split())}")
    if image.data:
        fields.append(f"x {hashlib.sha256(image.data).hexdigest()}")
    return ("imeta", *fields)


def hashtags(text: str) -> list[str]:
    """NIP-24: `#word` in a note becomes a lowercase `t` tag, so hashtag followers see it."""
    found: list[str] = []
    for match in _HASHTAG.finditer(text):
        tag = match.group(1).lower()
        if tag not in found:
            found.append(tag)
    return found


def _event_id(text: str) -> str:
    try:
        return parse_event_id(text)
    except InvalidKey:
        raise UserError(f"{text[:80]!r} is not a nostr note id (note1…, nevent1… or hex)") from None
