"""One resource's position, for polling and streaming at once, in one cursor string.

The core stores one opaque cursor per resource. Bluesky needs two positions:
`poll`, the newest sort time the author feed or search returned (it only bounds
how far back a poll pages), and `stream_us`, the Jetstream `time_us` up to which
events for this account have been handed to the relay. Jetstream's `time_us` is
portable between Jetstream hosts, so a reconnect to any host resumes from it.
"""

from __future__ import annotations

import msgspec


class Position(msgspec.Struct, omit_defaults=True):
    poll: str = ""
    stream_us: int = 0

    def merged(self, other: Position) -> Position:
        """The further of each position: stream and poll may each have moved on."""
        return Position(max(self.poll, other.poll), max(self.stream_us, other.stream_us))


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Position)


def encode(position: Position) -> str:
    return _encoder.encode(position).decode()


def decode(cursor: str | None) -> Position:
    if not cursor:
        return Position()
    try:
        return _decoder.decode(cursor)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return Position()  # an unreadable cursor only costs one baseline fetch
