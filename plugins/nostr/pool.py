"""Every configured relay at once: one-shot queries (REQ until EOSE) and publishing.

Each relay is asked in parallel and reported to the health record on its own, so
one dead relay shows up in `/status` while the others carry the load. Only when
no relay answers does a fetch or publish fail, with an outcome the scheduler
uses for backoff.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bot.errors import Outcome, UpstreamError
from bot.protocols import HealthRecorder
from plugins.nostr.events import Event, NotAnEvent, decode_event, id_matches, signature_valid
from plugins.nostr.wire import (
    Closed,
    EndOfStored,
    EventMessage,
    Filter,
    Ok,
    RelayConnection,
    RelayError,
    classify,
    relay_host,
)

log = logging.getLogger(__name__)

_PREFIX = re.compile(r"^([a-z-]{1,24}):")
_PREFIX_OUTCOMES = {
    "auth-required": Outcome.AUTH,
    "restricted": Outcome.AUTH,
    "blocked": Outcome.AUTH,
    "rate-limited": Outcome.RATE_LIMITED,
    "error": Outcome.HTTP_5XX,
}


def machine_prefix(message: str) -> str:
    """The NIP-01 machine-readable prefix (`blocked`, `invalid`…); relay prose is untrusted."""
    match = _PREFIX.match(message.strip())
    return match.group(1) if match else ""


def outcome_for(message: str) -> Outcome:
    return _PREFIX_OUTCOMES.get(machine_prefix(message), Outcome.HTTP_4XX)


@dataclass(slots=True)
class RelayAnswer:
    """What one relay sent for a query: verified events per subscription, or why it failed."""

    host: str
    events: dict[str, list[Event]] = field(default_factory=dict)
    error: RelayError | None = None
    forged: int = 0
    url: str = ""  # the relay asked (several relays may share a host)

    @property
    def received(self) -> int:
        return sum(len(events) for events in self.events.values())


class EventVerifier:
    """Checks every event; remembers recently verified signatures so relay echoes are cheap.

    The id is always recomputed (a hash), so a copy with altered fields fails even
    when its id and signature were seen before; only the Schnorr check is cached.
    """

    def __init__(self, capacity: int = 50_000) -> None:
        self._signed: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._capacity = capacity

    def verify(self, raw: object) -> Event | None:
        """The event if it is well-formed and authentic, else None."""
        try:
            event = decode_event(raw)
        except NotAnEvent:
            return None
        if not id_matches(event):
            return None
        proof = (event.pubkey, event.sig)
        if self._signed.get(event.id) == proof:
            self._signed.move_to_end(event.id)
            return event
        if not signature_valid(event):
            return None
        self._signed[event.id] = proof
        while len(self._signed) > self._capacity:
            self._signed.popitem(last=False)
        return event


class RelayPool:
    """The configured relays, the health record and the shared verifier."""

    def __init__(
        self,
        *,
        network: str,
        relays: Sequence[str],
        health: HealthRecorder,
        timeout_s: float,
        max_bytes: int,
        verifier: EventVerifier,
    ) -> None:
        self.network = network
        self.relays = list(relays)
        self.health = health
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.verifier = verifier

    async def connect(self, url: str) -> RelayConnection:
        return await RelayConnection.open(url, timeout_s=self.timeout_s, max_bytes=self.max_bytes)

    def record(
        self, url: str, error: RelayError | None, latency_s: float, detail: str = ""
    ) -> None:
        if error is None:
            self.health.record(self.network, relay_host(url), Outcome.OK, latency_s=latency_s)
        else:
            self.health.record(
                self.network,
                relay_host(url),
                error.outcome,
                latency_s=latency_s,
                status=error.status,
                detail=detail or str(error),
            )

    # --- queries --------------------------------------------------------------------

    async def query(
        self, subs: Mapping[str, Sequence[Filter]], *, max_events: int
    ) -> list[RelayAnswer]:
        """Ask every relay; raise `UpstreamError` only if none of them answered."""
        answers = await asyncio.gather(
            *(self._query_one(url, subs, max_events) for url in self.relays)
        )
        if answers and all(a.error is not None and not a.received for a in answers):
            raise _all_failed("no nostr relay answered", answers)
        return list(answers)

    async def query_relay(
        self, url: str, subs: Mapping[str, Sequence[Filter]], *, max_events: int
    ) -> RelayAnswer:
        """Ask one relay (recorded in the health record like any query)."""
        return await self._query_one(url, subs, max_events)

    async def _query_one(
        self, url: str, subs: Mapping[str, Sequence[Filter]], max_events: int
    ) -> RelayAnswer:
        answer = RelayAnswer(relay_host(url), {sub_id: [] for sub_id in subs}, url=url)
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._collect(url, subs, max_events, answer)
        except TimeoutError:
            answer.error = RelayError(
                Outcome.TIMEOUT, "did not finish sending stored events in time"
            )
        except RelayError as err:
            answer.error = err
        except Exception as exc:  # any other failure is still one relay's failure
            answer.error = classify(exc)
        self.record(url, answer.error, time.monotonic() - started)
        if answer.forged:
            log.warning(
                "%s sent %d events with a bad id or signature; dropped", answer.host, answer.forged
            )
        return answer

    async def _collect(
        self, url: str, subs: Mapping[str, Sequence[Filter]], max_events: int, answer: RelayAnswer
    ) -> None:
        async with await self.connect(url) as conn:
            for sub_id, filters in subs.items():
                await conn.request(sub_id, filters)
            pending = set(subs)
            refused: list[str] = []
            async for message in conn.messages():
                if isinstance(message, EventMessage) and message.sub_id in pending:
                    bucket = answer.events[message.sub_id]
                    if len(bucket) >= max_events:
                        continue  # a relay ignoring `limit` must not flood us
                    event = self.verifier.verify(message.event)
                    if event is None:
                        answer.forged += 1
                    else:
                        bucket.append(event)
                elif isinstance(message, EndOfStored | Closed) and message.sub_id in pending:
                    pending.discard(message.sub_id)
                    if isinstance(message, Closed):
                        refused.append(message.message)
                if not pending:
                    break
            for sub_id in subs:
                await conn.close_subscription(sub_id)
            if refused and len(refused) == len(subs):
                prefix = machine_prefix(refused[0]) or "closed"
                raise RelayError(outcome_for(refused[0]), f"refused the subscription ({prefix})")

    # --- publishing -----------------------------------------------------------------

    async def publish(self, event: Event) -> list[str]:
        """Send to every relay and wait for OK; return the hosts that hold it now."""
        if not self.relays:
            raise UpstreamError(Outcome.REFUSED, "no nostr relays are configured")
        answers = await asyncio.gather(*(self._publish_one(url, event) for url in self.relays))
        accepted = [a.host for a in answers if a.error is None]
        if not accepted:
            raise _all_failed("no nostr relay accepted the event", answers)
        return accepted

    async def _publish_one(self, url: str, event: Event) -> RelayAnswer:
        answer = RelayAnswer(relay_host(url))
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_s):
                async with await self.connect(url) as conn:
                    await conn.publish(event.to_wire())
                    async for message in conn.messages():
                        if isinstance(message, Ok) and message.event_id == event.id:
                            prefix = machine_prefix(message.message)
                            if not message.accepted and prefix != "duplicate":
                                raise RelayError(
                                    outcome_for(message.message),
                                    f"rejected the event ({prefix or 'no reason given'})",
                                )
                            break
        except TimeoutError:
            answer.error = RelayError(Outcome.TIMEOUT, "did not confirm the event in time")
        except RelayError as err:
            answer.error = err
        except Exception as exc:
            answer.error = classify(exc)
        self.record(url, answer.error, time.monotonic() - started)
        return answer


def _all_failed(what: str, answers: Sequence[RelayAnswer]) -> UpstreamError:
    first = next(a.error for a in answers if a.error is not None)
    reasons = "; ".join(f"{a.host} {a.error}" for a in answers if a.error is not None)
    return UpstreamError(first.outcome, f"{what} ({reasons})", status=first.status)
