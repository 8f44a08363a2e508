"""NIP-01 over one websocket: REQ/CLOSE/EVENT out; EVENT, EOSE, OK, CLOSED, NOTICE in.

Built on the `websockets` client. Every failure is turned into a classified
`RelayError` (refused, timeout, dns, tls, http status, dropped stream, parse), so
the source can report each relay's health separately and carry on with the
others. Frames are untrusted: anything that is not a well-formed NIP-01 message
is skipped, never raised into the caller.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
    PayloadTooBig,
    WebSocketException,
)

from bot import __version__
from bot.errors import Outcome

log = logging.getLogger(__name__)

Filter = Mapping[str, Any]
_MESSAGE_TOO_BIG = 1009  # websocket close code
USER_AGENT = f"Starling/{__version__} (nostr relay client)"


class RelayError(Exception):
    """A relay could not be used; `outcome` classifies why for the health record."""

    def __init__(self, outcome: Outcome, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.status = status


@dataclass(frozen=True, slots=True)
class EventMessage:
    sub_id: str
    event: object


@dataclass(frozen=True, slots=True)
class EndOfStored:
    sub_id: str


@dataclass(frozen=True, slots=True)
class Closed:
    sub_id: str
    message: str


@dataclass(frozen=True, slots=True)
class Notice:
    message: str


@dataclass(frozen=True, slots=True)
class Ok:
    event_id: str
    accepted: bool
    message: str


RelayMessage = EventMessage | EndOfStored | Closed | Notice | Ok


def relay_host(url: str) -> str:
    """host[:port] of a relay URL: the health record's key, never with credentials."""
    parts = urlsplit(url)
    host = parts.hostname or url
    return f"{host}:{parts.port}" if parts.port else host


def parse_message(frame: str | bytes) -> RelayMessage | None:
    """One relay frame → a message, or None if it is not well-formed NIP-01."""
    try:
        data = msgspec.json.decode(frame)
    except msgspec.DecodeError:
        return None
    if not isinstance(data, list) or not data or not isinstance(data[0], str):
        return None
    kind, args = data[0], data[1:]
    if kind == "EVENT" and len(args) >= 2 and isinstance(args[0], str):
        return EventMessage(args[0], args[1])
    if kind == "EOSE" and args and isinstance(args[0], str):
        return EndOfStored(args[0])
    if kind == "CLOSED" and args and isinstance(args[0], str):
        return Closed(args[0], str(args[1]) if len(args) > 1 else "")
    if kind == "NOTICE" and args:
        return Notice(str(args[0]))
    if kind == "OK" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], bool):
        return Ok(args[0], args[1], str(args[2]) if len(args) > 2 else "")
    return None


def classify(exc: BaseException) -> RelayError:
    """Map a connection failure onto the health outcomes the outage work counts."""
    if isinstance(exc, RelayError):
        return exc
    if isinstance(exc, TimeoutError):
        return RelayError(Outcome.TIMEOUT, "timed out")
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        return RelayError(
            Outcome.for_status(status), f"refused the websocket with HTTP {status}", status=status
        )
    if isinstance(exc, PayloadTooBig):
        return RelayError(Outcome.TOO_LARGE, "sent a message larger than max_message_bytes")
    if isinstance(exc, ConnectionClosed):
        if exc.sent is not None and exc.sent.code == _MESSAGE_TOO_BIG:
            return RelayError(Outcome.TOO_LARGE, "sent a message larger than max_message_bytes")
        return RelayError(Outcome.STREAM_DROPPED, "closed the connection")
    if isinstance(exc, InvalidURI):
        return RelayError(Outcome.PARSE, "is not a valid websocket URL")
    if isinstance(exc, InvalidHandshake | WebSocketException):
        return RelayError(Outcome.PARSE, "did not complete a websocket handshake")
    if isinstance(exc, socket.gaierror):
        return RelayError(Outcome.DNS, "could not be resolved")
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return RelayError(Outcome.TLS, "failed the TLS handshake")
    if isinstance(exc, ConnectionRefusedError):
        return RelayError(Outcome.REFUSED, "refused the connection")
    if isinstance(exc, OSError):
        return RelayError(Outcome.REFUSED, f"could not be reached ({exc.strerror or 'error'})")
    return RelayError(Outcome.PARSE, f"failed ({type(exc).__name__})")


class RelayConnection:
    """One open websocket to a relay. Use `async with RelayConnection.open(...)`."""

    def __init__(self, url: str, ws: ClientConnection, connect_s: float) -> None:
        self.url = url
        self.host = relay_host(url)
        self.connect_s = connect_s
        self._ws = ws

    @classmethod
    async def open(cls, url: str, *, timeout_s: float, max_bytes: int) -> RelayConnection:
        """Connect (bounded by `timeout_s`); raise a classified `RelayError` on failure."""
        started = time.monotonic()
        try:
            ws = await connect(
                url,
                open_timeout=timeout_s,
                close_timeout=2,
                max_size=max_bytes,
                proxy=None,
                user_agent_header=USER_AGENT,
            )
        except Exception as exc:
            raise classify(exc) from None
        return cls(url, ws, time.monotonic() - started)

    async def __aenter__(self) -> RelayConnection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        try:
            await self._ws.close()
        except Exception:  # the relay may already be gone; closing must not fail
            log.debug("closing %s failed", self.host, exc_info=True)

    async def _send(self, message: Sequence[object]) -> None:
        try:
            await self._ws.send(msgspec.json.encode(message).decode())
        except Exception as exc:
            raise classify(exc) from None

    async def request(self, sub_id: str, filters: Sequence[Filter]) -> None:
        await self._send(["REQ", sub_id, *filters])

    async def close_subscription(self, sub_id: str) -> None:
        await self._send(["CLOSE", sub_id])

    async def publish(self, event: Mapping[str, object]) -> None:
        await self._send(["EVENT", event])

    async def messages(self) -> AsyncIterator[RelayMessage]:
        """Well-formed messages until the connection ends (then a classified `RelayError`)."""
        while True:
            try:
                frame = await self._ws.recv()
            except Exception as exc:
                raise classify(exc) from None
            message = parse_message(frame)
            if message is None:
                log.debug("%s sent a frame that is not NIP-01; skipped", self.host)
                continue
            yield message
