"""NIP-19 bech32 entities (npub, nsec, note, nprofile, nevent) and key parsing.

Members paste keys in whichever form their client shows, so input accepts npub,
nprofile, `nostr:` URIs (NIP-21) and 64-character hex; the protocol itself only
ever sees lowercase hex. Relay hints inside nprofile are ignored on purpose:
Starling reads only the relays its operator configured.
"""

from __future__ import annotations

import re

import bech32
from coincurve import PrivateKey, PublicKeyXOnly

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
# NIP-19 strings with TLV payloads are longer than BIP-173's 90-character cap.
_MAX_BECH32 = 5000
_TLV_SPECIAL = 0
_TLV_AUTHOR = 2
_TLV_KIND = 3


class InvalidKey(ValueError):
    """Input that is not the entity it claims to be; the message is safe to show."""


def _decode(text: str) -> tuple[str, bytes]:
    """bech32 (not bech32m) to (prefix, payload bytes)."""
    if len(text) > _MAX_BECH32:
        raise InvalidKey("too long")
    hrp, data = bech32.bech32_decode(text)
    if hrp is None or data is None:
        raise InvalidKey("bad bech32 checksum or characters")
    payload = bech32.convertbits(data, 5, 8, False)
    if payload is None:
        raise InvalidKey("bad bech32 padding")
    return hrp, bytes(payload)


def _encode(hrp: str, payload: bytes) -> str:
    words = bech32.convertbits(payload, 8, 5, True)
    assert words is not None  # 8-to-5 with padding cannot fail
    encoded = bech32.bech32_encode(hrp, words)
    assert encoded is not None
    return encoded


def _tlv(payload: bytes) -> dict[int, list[bytes]]:
    items: dict[int, list[bytes]] = {}
    pos = 0
    while pos + 2 <= len(payload):
        kind, length = payload[pos], payload[pos + 1]
        value = payload[pos + 2 : pos + 2 + length]
        if len(value) != length:
            raise InvalidKey("truncated TLV")
        items.setdefault(kind, []).append(value)
        pos += 2 + length
    return items


def is_hex64(text: str) -> bool:
    return bool(_HEX64.match(text))


def valid_xonly(pubkey_hex: str) -> bool:
    """True if the hex is a point on secp256k1 (BIP-340 x-only key)."""
    try:
        PublicKeyXOnly(bytes.fromhex(pubkey_hex))
    except ValueError:
        return False
    return True


def parse_pubkey(text: str) -> str:
    """npub / nprofile / nostr: URI / hex → lowercase hex; `InvalidKey` if not a valid key."""
    value = text.strip()
    if value.lower().startswith("nostr:"):
        value = value[len("nostr:") :]
    lowered = value.lower()
    if lowered.startswith(("npub1", "nprofile1")):
        hrp, payload = _decode(lowered)
        if hrp == "nprofile":
            special = _tlv(payload).get(_TLV_SPECIAL, [])
            payload = special[0] if special else b""
        if len(payload) != 32:
            raise InvalidKey("wrong length")
        hex_key = payload.hex()
    elif is_hex64(lowered):
        hex_key = lowered
    else:
        raise InvalidKey("not npub or hex")
    if not valid_xonly(hex_key):
        raise InvalidKey("not a point on the curve")
    return hex_key


def parse_secret_key(text: str) -> PrivateKey:
    """nsec or 64-character hex → key. Messages never contain the input (it is a secret)."""
    value = text.strip()
    if value.lower().startswith("nsec1"):
        hrp, payload = _decode(value.lower())
        if hrp != "nsec" or len(payload) != 32:
            raise InvalidKey("secret_key is not a valid nsec")
    elif is_hex64(value.lower()):
        payload = bytes.fromhex(value)
    else:
        raise InvalidKey("secret_key must be an nsec1… string or 64 hex characters")
    try:
        return PrivateKey(payload)
    except ValueError:
        raise InvalidKey("secret_key is out of range for secp256k1") from None


def xonly_hex(key: PrivateKey) -> str:
    """The BIP-340 public key (x coordinate) of a secret key, as hex."""
    return key.public_key.format(compressed=True)[1:].hex()


def npub(pubkey_hex: str) -> str:
    return _encode("npub", bytes.fromhex(pubkey_hex))


def short_npub(pubkey_hex: str) -> str:
    """npub1abcd…wxyz: enough to recognise, short enough for a chat header."""
    full = npub(pubkey_hex)
    return f"{full[:10]}…{full[-4:]}"


def note(event_id_hex: str) -> str:
    return _encode("note", bytes.fromhex(event_id_hex))


def nevent(event_id_hex: str, author_hex: str = "", kind: int | None = None) -> str:
    """NIP-19 nevent with the author and kind hints (no relay hint: relays are private config)."""
    payload = bytes([_TLV_SPECIAL, 32]) + bytes.fromhex(event_id_hex)
    if author_hex:
        payload += bytes([_TLV_AUTHOR, 32]) + bytes.fromhex(author_hex)
    if kind is not None:
        payload += bytes([_TLV_KIND, 4]) + kind.to_bytes(4, "big")
    return _encode("nevent", payload)


def parse_event_id(text: str) -> str:
    """note / nevent / hex → hex event id (for delete and reply targets)."""
    value = text.strip().lower()
    if value.startswith("nostr:"):
        value = value[len("nostr:") :]
    if is_hex64(value):
        return value
    if value.startswith(("note1", "nevent1")):
        hrp, payload = _decode(value)
        if hrp == "nevent":
            special = _tlv(payload).get(_TLV_SPECIAL, [])
            payload = special[0] if special else b""
        if len(payload) == 32:
            return payload.hex()
    raise InvalidKey("not a note id")
