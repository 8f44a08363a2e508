"""NIP-01 events: the wire shape, the canonical id and BIP-340 signatures.

A relay is only a mirror: anyone can hand it an event claiming any author. So
every event received is checked here (id = sha256 of the canonical
serialisation, signature valid for the claimed pubkey) before Starling relays
it; a forged or tampered event is dropped.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Annotated

import msgspec
from coincurve import PrivateKey, PublicKeyXOnly

from plugins.nostr.keys import xonly_hex

Hex64 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
Hex128 = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{128}$")]
# Up to year ~36812: rejects absurd values without a datetime overflow later.
Timestamp = Annotated[int, msgspec.Meta(ge=0, le=2**40)]
Kind = Annotated[int, msgspec.Meta(ge=0, le=65535)]

KIND_METADATA = 0
KIND_NOTE = 1
KIND_DELETION = 5
KIND_REPOST = 6


class Event(msgspec.Struct, frozen=True):
    """One signed event as relays send it. Unknown fields are ignored."""

    id: Hex64
    pubkey: Hex64
    created_at: Timestamp
    kind: Kind
    tags: tuple[tuple[str, ...], ...]
    content: str
    sig: Hex128

    def tag_values(self, name: str) -> list[str]:
        return [tag[1] for tag in self.tags if len(tag) >= 2 and tag[0] == name]

    def to_wire(self) -> dict[str, object]:
        return msgspec.to_builtins(self)  # type: ignore[no-any-return]


class NotAnEvent(ValueError):
    """The JSON does not have the NIP-01 event shape."""


def decode_event(raw: object) -> Event:
    try:
        return msgspec.convert(raw, Event)
    except msgspec.ValidationError as err:
        raise NotAnEvent(str(err)) from None


def serialize(
    pubkey: str, created_at: int, kind: int, tags: tuple[tuple[str, ...], ...], content: str
) -> bytes:
    """The NIP-01 canonical form: no whitespace, UTF-8, only the mandatory escapes.

    Python's encoder escapes exactly \\n \\" \\\\ \\r \\t \\b \\f with short forms and
    other control characters as \\uXXXX, which is what every major client does.
    A lone surrogate cannot be UTF-8 encoded: that raises `UnicodeEncodeError`.
    """
    text = json.dumps(
        [0, pubkey, created_at, kind, tags, content], separators=(",", ":"), ensure_ascii=False
    )
    return text.encode("utf-8")


def compute_id(
    pubkey: str, created_at: int, kind: int, tags: tuple[tuple[str, ...], ...], content: str
) -> str:
    return hashlib.sha256(serialize(pubkey, created_at, kind, tags, content)).hexdigest()


@functools.lru_cache(maxsize=4096)
def _xonly(pubkey: str) -> PublicKeyXOnly | None:
    try:
        return PublicKeyXOnly(bytes.fromhex(pubkey))
    except ValueError:
        return None


def id_matches(event: Event) -> bool:
    """The id is the hash of the fields: a relay cannot change a field and keep the id."""
    try:
        expected = compute_id(event.pubkey, event.created_at, event.kind, event.tags, event.content)
    except UnicodeEncodeError:
        return False
    return expected == event.id


def signature_valid(event: Event) -> bool:
    """BIP-340: the id was signed by the secret key behind `pubkey`."""
    key = _xonly(event.pubkey)
    if key is None:
        return False
    try:
        return bool(key.verify(bytes.fromhex(event.sig), bytes.fromhex(event.id)))
    except ValueError:
        return False


def is_valid(event: Event) -> bool:
    """True only if the id matches the content and the Schnorr signature is the author's."""
    return id_matches(event) and signature_valid(event)


def sign(
    key: PrivateKey,
    *,
    kind: int,
    content: str,
    tags: tuple[tuple[str, ...], ...],
    created_at: int,
) -> Event:
    """Build and sign an event; the id depends only on the fields, so it is reproducible."""
    pubkey = xonly_hex(key)
    event_id = compute_id(pubkey, created_at, kind, tags, content)
    sig = key.sign_schnorr(bytes.fromhex(event_id)).hex()
    return Event(event_id, pubkey, created_at, kind, tags, content, sig)
