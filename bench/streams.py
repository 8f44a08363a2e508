"""Streams benchmark: Jetstream ingest rate and stream-event → chat-send latency.

Two measurements, each a pair of processes run side by side (a local server pinned
to one core, the Starling side pinned to the other), both started with
`bench.common.run_worker` on a free loopback port the orchestrator picks:

* **ingest**: `blast` serves Jetstream's wire format (`/subscribe`, then one JSON
  text frame per event) and writes N pre-encoded commit events to the socket as
  fast as the client reads them. `ingest` runs the real Bluesky plugin's
  `StreamingSource.stream` (plugins/bluesky/jetstream.py, built through the
  plugin's entry point) with a sink that only counts, and reports events per
  CPU-second of its own process: websocket framing, msgspec decoding, matching
  against the followed DIDs, `from_record` for followed posts. Two scenarios:
  `unfiltered` (1 % of the events are by followed accounts: what the consumer
  costs when the server does not filter by `wantedDids`) and `followed` (every
  event is a followed account's post: the server filtered). The `ingest` worker
  also times the decoders alone on the same frames (typed msgspec, as the plugin
  does; the stdlib `json.loads` as baseline).
* **latency**: `live` runs `tests.fakes.jetstream.FakeJetstream` (the fake the
  plugin's tests use) and, once Starling has subscribed, appends posts by
  followed accounts at a steady rate, noting `time.perf_counter()` when each one
  appears upstream. `app` runs the real `App` with the real Bluesky plugin, a
  real SQLite store, thousands of subscriptions made with
  `store.create_subscription` (DIDs as targets, profiles pre-cached as `/follow`
  leaves them) and `bench.harness.BenchChat`, whose send time closes the
  measurement. On Linux `perf_counter` is CLOCK_MONOTONIC, shared by processes.
  `nostr-live` and `mastodon-live` do the same against the nostr relay and the
  fake Mastodon (`tests.fakes.mastodon_server`, streaming `public:local`).

Worker entry point:
`python -m bench.streams blast|ingest|live|nostr-live|mastodon-live|app ... --out FILE`.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import math
import random
import resource
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    Result,
    Target,
    cpu_plan,
    machine_busy_s,
    percentile,
    progress,
    run_worker,
)

BENCH = "streams"
MODULE = "bench.streams"
WEB_URL = "https://bsky.app"
END_RKEY = "zzzzzzzzzzzzz"  # the last event of a blast: a followed post with this rkey
B32 = "234567abcdefghijklmnopqrstuvwxyz"  # the alphabet of DIDs (plc) and TIDs
FIREHOSE = REPO / "tests" / "fixtures" / "bluesky" / "firehose_posts.json"
LATENCY_TARGET_MS = 250.0
INGEST_TARGET = 20_000.0


@dataclass(frozen=True, slots=True)
class Config:
    followed: int  # followed accounts (DIDs)
    unfiltered_events: int  # events in the `unfiltered` blast
    followed_events: int  # events in the `followed` blast
    decode_s: float  # CPU time per decoder measurement
    rate: float  # posts/s upstream in the latency run
    latency_s: float  # how long posts are emitted
    channels: int
    nostr_rate: float  # notes/s published to the relay (a Python relay: kept modest)
    nostr_followed: int  # followed authors (batched into shared `authors` filters)
    mastodon_rate: float  # statuses/s pushed by the fake Mastodon
    mastodon_s: float  # how long statuses are pushed


FULL = Config(2000, 200_000, 40_000, 1.5, 200.0, 20.0, 50, 50.0, 200, 100.0, 15.0)
QUICK = Config(2000, 40_000, 8_000, 0.3, 200.0, 4.0, 50, 50.0, 200, 100.0, 4.0)


def log(message: str) -> None:
    progress(BENCH, message)


# --- synthetic Jetstream traffic (shared by the servers and the workers) ------------------


def b32(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 32)
        digits.append(B32[digit])
    return "".join(reversed(digits))


def did_of(i: int) -> str:
    """A valid did:plc for account `i` (24 base32 characters)."""
    return f"did:plc:{b32(i, 24)}"


def followed_dids(count: int) -> list[str]:
    return [did_of(i) for i in range(count)]


def post_templates() -> list[dict[str, Any]]:
    """Real post commits (facets, images, link cards, replies, quotes) from the fixture."""
    events: list[dict[str, Any]] = json.loads(FIREHOSE.read_text(encoding="utf-8"))["firehose"]
    return [
        e
        for e in events
        if e.get("kind") == "commit" and e["commit"].get("collection") == "app.bsky.feed.post"
    ]


def post_event(template: dict[str, Any], did: str, seq: int, time_us: int) -> dict[str, Any]:
    commit = dict(template["commit"])
    commit["rkey"] = b32(seq, 13)
    commit["rev"] = b32(seq + 1, 13)
    return {"did": did, "time_us": time_us, "kind": "commit", "commit": commit}


def blast_events(count: int, followed_share: float, followed: int) -> list[bytes]:
    """`count` encoded events; `followed_share` of them are posts by followed accounts.

    The others are posts by 100,000 other accounts and, one in fifty, identity
    events, the mix Jetstream sends for `wantedCollections=app.bsky.feed.post`.
    The last event is a followed post whose rkey is `END_RKEY`.
    """
    import msgspec

    rng = random.Random(7)
    templates = post_templates()
    encode = msgspec.json.encode
    start_us = 1_760_000_000_000_000
    frames = []
    for seq in range(count - 1):
        time_us = start_us + seq
        if rng.random() < followed_share:
            did = did_of(rng.randrange(followed))
        else:
            did = did_of(followed + rng.randrange(100_000))
            if rng.random() < 0.02:
                identity = {"did": did, "handle": f"u{seq}.bsky.social", "seq": seq}
                event = {"did": did, "time_us": time_us, "kind": "identity", "identity": identity}
                frames.append(encode(event))
                continue
        frames.append(encode(post_event(rng.choice(templates), did, seq, time_us)))
    last = post_event(templates[0], did_of(0), 0, start_us + count)
    last["commit"]["rkey"] = END_RKEY
    frames.append(encode(last))
    return frames


def ws_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented websocket text frame (RFC 6455 §5.2), as a server sends."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 65536:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return header + payload


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def bluesky_config(port: int) -> dict[str, Any]:
    """Every URL on loopback: Jetstream is the local server; nothing else is called."""
    local = f"http://127.0.0.1:{port}"
    return {
        "jetstream": f"ws://127.0.0.1:{port}",
        "appview": local,
        "service": local,
        "web_url": WEB_URL,
        "persist_session": False,
        "stream_checkpoint_s": 3600.0,
    }


def load_bluesky(data_dir: Path, port: int) -> Any:
    """The real Bluesky plugin with loopback config."""
    return load_network("bluesky", bluesky_config(port), data_dir)


def nostr_secrets(count: int) -> list[bytes]:
    """Deterministic secret keys, so publisher and follower agree without talking."""
    return [hashlib.sha256(f"starling-bench-{i}".encode()).digest() for i in range(count)]


def nostr_pubkeys(count: int) -> list[str]:
    import coincurve

    return [coincurve.PrivateKey(s).public_key.format()[1:].hex() for s in nostr_secrets(count)]


def load_network(name: str, config: dict[str, Any], data_dir: Path) -> Any:
    """A real network plugin, created through its entry point."""
    from bot.clock import SystemClock
    from bot.health import HealthBook
    from bot.plugins import NETWORK_GROUP, discover, load_factory
    from bot.protocols import PluginContext

    clock = SystemClock()
    context = PluginContext(
        name=name,
        config=config,
        health=HealthBook(clock),
        clock=clock,
        allow_private_addresses=True,
        data_dir=str(data_dir),
    )
    return load_factory(discover(NETWORK_GROUP)[name])(context)


async def wait_for_port(port: int, timeout_s: float = 30.0) -> None:
    """Until the local server accepts connections (it may still be encoding its events)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return


def cache_profiles(network: Any, dids: list[str]) -> None:
    """What resolving each account at /follow leaves in the plugin's profile cache."""
    from plugins.bluesky.lexicon import ProfileBasic

    for i, did in enumerate(dids):
        network.bluesky.profiles[did] = ProfileBasic(did, f"user{i}.test", f"User {i}")


# --- orchestration (the `python -m bench` process) -----------------------------------


def run(*, quick: bool = False) -> list[Result]:
    cfg = QUICK if quick else FULL
    server_core, bench_core = cpu_plan()
    log(
        f"{cfg.followed:,} followed accounts; servers on core {server_core}, "
        f"Starling on {bench_core}"
    )
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="starling-streams-") as tmp:
        work = Path(tmp)
        for key, share, count in (
            ("unfiltered", 0.01, cfg.unfiltered_events),
            ("followed", 1.0, cfg.followed_events),
        ):
            results += _ingest(cfg, key, share, count, work, server_core, bench_core)
        results += _jetstream_latency(cfg, work, server_core, bench_core)
        results += _nostr_latency(cfg, work, server_core, bench_core)
        results += _mastodon_latency(cfg, work, server_core, bench_core)
    return results


def _pair(
    server: tuple[list[str], float],
    client: tuple[list[str], float],
    work: Path,
    label: str,
    cores: tuple[int | None, int | None],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run a server worker and a client worker at once; both JSON results."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        served = pool.submit(
            run_worker,
            MODULE,
            server[0],
            core=cores[0],
            timeout_s=server[1],
            out=work / f"{label}-server.json",
        )
        time.sleep(0.3)  # let the server bind before the client dials
        client_out = pool.submit(
            run_worker,
            MODULE,
            client[0],
            core=cores[1],
            timeout_s=client[1],
            out=work / f"{label}-client.json",
        )
        return served.result(), client_out.result()


def _ingest(
    cfg: Config,
    key: str,
    share: float,
    count: int,
    work: Path,
    server_core: int | None,
    bench_core: int | None,
) -> list[Result]:
    port = free_port()
    log(f"ingest/{key}: {count:,} events, {share:.0%} by followed accounts")
    common = ["--port", str(port), "--events", str(count), "--share", str(share)]
    common += ["--followed", str(cfg.followed)]
    budget = 60 + count / 5000
    server_args = ["blast", *common]
    client_args = ["ingest", *common, "--data-dir", str(work / f"ingest-{key}")]
    client_args += ["--decode-seconds", str(cfg.decode_s)]
    served, got = _pair(
        (server_args, budget), (client_args, budget), work, key, (server_core, bench_core)
    )
    if got["events"] != count or got["posts"] != served["followed_posts"]:
        log(
            f"ingest/{key}: WARNING {got['posts']} posts reached the sink, "
            f"{served['followed_posts']} followed posts were sent"
        )
    log(
        f"ingest/{key}: {got['events_per_cpu_s']:,.0f} events per CPU-second "
        f"({got['events_per_s']:,.0f}/s wall, server {served['cpu_s']:.1f} CPU-s)"
    )
    name = f"{BENCH}/jetstream_ingest_{key}"
    rows = [
        Result(
            name,
            "events_per_cpu_s",
            got["events_per_cpu_s"],
            "1/s",
            target=Target(">=", INGEST_TARGET),
            label=f"Jetstream events per CPU-second ({share:.0%} followed)",
        ),
        Result(name, "events_per_s", got["events_per_s"], "1/s", label="events/s (wall, 1 core)"),
        Result(name, "cpu_busy_pct", got["cpu_busy_pct"], "%", label="consumer CPU busy"),
        Result(name, "posts", got["posts"], "count", label="followed posts handed to the sink"),
    ]
    if key == "unfiltered":
        rows += [
            Result(
                f"{BENCH}/jetstream_decode",
                "events_per_cpu_s",
                got["decode_msgspec"],
                "1/s",
                got["decode_json"],
                label="decode only: msgspec → JetstreamEvent (baseline: json.loads)",
            )
        ]
    return rows


def _jetstream_latency(
    cfg: Config, work: Path, server_core: int | None, bench_core: int | None
) -> list[Result]:
    port = free_port()
    expected = round(cfg.rate * cfg.latency_s)
    log(f"latency/jetstream: {cfg.rate:.0f} posts/s for {cfg.latency_s:.0f} s, real App")
    common = ["--port", str(port), "--followed", str(cfg.followed)]
    common += ["--rate", str(cfg.rate), "--seconds", str(cfg.latency_s)]
    server_args = ["live", *common]
    client_args = ["app", *common, "--channels", str(cfg.channels)]
    client_args += ["--data-dir", str(work / "app"), "--expect", str(expected)]
    budget = 60 + cfg.latency_s
    served, got = _pair(
        (server_args, budget), (client_args, budget), work, "live", (server_core, bench_core)
    )
    return _latency_rows("jetstream", served, got, expected)


def _nostr_latency(
    cfg: Config, work: Path, server_core: int | None, bench_core: int | None
) -> list[Result]:
    """The real nostr relay (PyPI nostr-relay, as in the plugin's tests); signed notes."""
    sys.path.insert(0, str(REPO))
    from tests.fakes.nostr_relay import NostrRelay

    expected = round(cfg.nostr_rate * cfg.latency_s)
    log(
        f"latency/nostr: {cfg.nostr_rate:.0f} notes/s by {cfg.nostr_followed} followed "
        f"authors for {cfg.latency_s:.0f} s, real relay"
    )
    relay = NostrRelay(work / "relay").start()
    try:
        common = ["--port", "0", "--relay", relay.url, "--followed", str(cfg.nostr_followed)]
        common += ["--rate", str(cfg.nostr_rate), "--seconds", str(cfg.latency_s)]
        common += ["--ready", str(work / "nostr-ready")]
        server_args = ["nostr-live", *common]
        client_args = ["app", *common, "--network", "nostr", "--channels", str(cfg.channels)]
        client_args += ["--data-dir", str(work / "nostr-app"), "--expect", str(expected)]
        budget = 90 + cfg.latency_s
        served, got = _pair(
            (server_args, budget), (client_args, budget), work, "nostr", (server_core, bench_core)
        )
    finally:
        relay.stop()
    return _latency_rows("nostr", served, got, expected)


def _mastodon_latency(
    cfg: Config, work: Path, server_core: int | None, bench_core: int | None
) -> list[Result]:
    """The fake Mastodon of the plugin's tests, streaming `public:local` to the real plugin."""
    port = free_port()
    expected = round(cfg.mastodon_rate * cfg.mastodon_s)
    log(
        f"latency/mastodon: {cfg.mastodon_rate:.0f} statuses/s by {cfg.followed:,} followed "
        f"accounts for {cfg.mastodon_s:.0f} s, fake Mastodon"
    )
    common = ["--port", str(port), "--followed", str(cfg.followed)]
    common += ["--rate", str(cfg.mastodon_rate), "--seconds", str(cfg.mastodon_s)]
    common += ["--accounts", str(work / "mastodon-accounts.json")]
    server_args = ["mastodon-live", *common]
    client_args = ["app", *common, "--network", "mastodon", "--channels", str(cfg.channels)]
    client_args += ["--data-dir", str(work / "mastodon-app"), "--expect", str(expected)]
    budget = 60 + cfg.mastodon_s
    served, got = _pair(
        (server_args, budget), (client_args, budget), work, "mastodon", (server_core, bench_core)
    )
    log(
        f"latency/mastodon: the reconnect backfill ({cfg.followed:,} REST fetches) took "
        f"{served['backfill_s']:.1f} s before the first status was pushed"
    )
    backfill = Result(
        f"{BENCH}/mastodon_latency",
        "backfill_s",
        served["backfill_s"],
        "s",
        label=f"stream open → backfill done ({served['backfills']:,} REST reads)",
    )
    return [*_latency_rows("mastodon", served, got, expected), backfill]


def _latency_rows(
    network: str, served: dict[str, Any], got: dict[str, Any], expected: int
) -> list[Result]:
    """Match each chat send to the moment its post appeared upstream."""
    appeared: dict[str, float] = served["appeared"]
    latencies = sorted(at - appeared[key] for key, at in got["sent"] if key in appeared)
    missing = len(appeared) - len(latencies)
    if missing:
        log(f"latency/{network}: WARNING {missing} of {len(appeared)} posts never reached chat")
    p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
    log(f"latency/{network}: p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(latencies)} posts")
    name = f"{BENCH}/{network}_latency"
    return [
        Result(name, "latency_p50_ms", p50, "ms", label="upstream post → chat send, p50"),
        Result(
            name,
            "latency_p99_ms",
            p99,
            "ms",
            target=Target("<=", LATENCY_TARGET_MS),
            label="upstream post → chat send, p99",
        ),
        Result(
            name,
            "latency_max_ms",
            latencies[-1] * 1000 if latencies else math.nan,
            "ms",
            label="… max",
        ),
        Result(name, "delivered", len(latencies), "count", label=f"posts delivered of {expected}"),
        Result(name, "cpu_busy_pct", got["cpu_busy_pct"], "%", label="Starling CPU busy"),
        Result(name, "other_cpu_pct", got["other_cpu_pct"], "%", label="other processes' CPU"),
    ]


# --- worker: blast (a Jetstream host that sends everything at once) -------------------


async def blast_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Serve one connection: after the subscription (and hello), write every frame."""
    from websockets.asyncio.server import ServerConnection, serve

    frames = blast_events(args.events, args.share, args.followed)
    followed = {f'"did":"{d}"'.encode() for d in followed_dids(args.followed)}
    followed_posts = sum(_is_followed(f, followed) for f in frames)
    wire = [ws_frame(f) for f in frames]
    done = asyncio.Event()
    cpu0 = time.process_time()

    async def handle(connection: ServerConnection) -> None:
        assert connection.request is not None
        if "requireHello=true" in connection.request.path:
            await connection.recv()  # the options_update with the wanted DIDs
        transport = connection.transport
        for start in range(0, len(wire), 256):
            transport.write(b"".join(wire[start : start + 256]))
            while transport.get_write_buffer_size() > 1 << 22:
                await asyncio.sleep(0.0005)
        with contextlib.suppress(Exception):
            await connection.wait_closed()
        done.set()

    async with serve(handle, "127.0.0.1", args.port, compression=None, max_size=None):
        await asyncio.wait_for(done.wait(), timeout=args.events / 2000 + 30)
    return {"followed_posts": followed_posts, "cpu_s": time.process_time() - cpu0}


def _is_followed(frame: bytes, followed: set[bytes]) -> bool:
    start = frame.index(b'"did":"')
    end = frame.index(b'"', start + 7)
    return frame[start : end + 1] in followed and b'"kind":"commit"' in frame


# --- worker: ingest (the real Jetstream consumer, counting) ---------------------------


async def ingest_worker(args: argparse.Namespace) -> dict[str, Any]:
    from bot.model import Post, TargetKind
    from bot.model import Target as Follow

    dids = followed_dids(args.followed)
    network = load_bluesky(Path(args.data_dir), args.port)
    cache_profiles(network, dids)
    targets = [Follow("bluesky", TargetKind.ACCOUNT, did, did) for did in dids]
    posts = 0
    done = asyncio.Event()

    async def sink(target: Follow, batch: list[Post], cursor: str | None) -> None:
        nonlocal posts
        posts += len(batch)
        if batch and batch[-1].permalink.endswith(END_RKEY):
            done.set()

    await wait_for_port(args.port)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    streaming = asyncio.create_task(network.source.stream(targets, {}, sink))
    try:
        await asyncio.wait_for(done.wait(), timeout=args.events / 2000 + 30)
    finally:
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        streaming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await streaming
        await network.aclose()
    figures = {
        "events": args.events,
        "posts": posts,
        "cpu_s": cpu,
        "wall_s": wall,
        "events_per_cpu_s": args.events / cpu,
        "events_per_s": args.events / wall,
        "cpu_busy_pct": cpu / wall * 100,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if args.decode_seconds:
        figures.update(_decode_rates(args, args.decode_seconds))
    return figures


def _decode_rates(args: argparse.Namespace, seconds: float) -> dict[str, float]:
    """The decoders alone over the same frames, in events per CPU-second."""
    import msgspec

    from plugins.bluesky.lexicon import JetstreamEvent

    frames = blast_events(min(args.events, 50_000), args.share, args.followed)
    typed = msgspec.json.Decoder(JetstreamEvent).decode
    return {
        "decode_msgspec": _per_cpu_s(frames, typed, seconds),
        "decode_json": _per_cpu_s(frames, json.loads, seconds),
    }


def _per_cpu_s(frames: list[bytes], decode: Callable[[bytes], Any], seconds: float) -> float:
    done = 0
    started = time.process_time()
    while True:
        for frame in frames:
            decode(frame)
        done += len(frames)
        spent = time.process_time() - started
        if spent >= seconds:
            return done / spent


# --- worker: live (the fake Jetstream, posting at a steady rate) ----------------------


async def live_worker(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from websockets.asyncio.server import serve

    from tests.fakes.jetstream import EventLog, FakeJetstream

    dids = followed_dids(args.followed)
    event_log = EventLog()
    host = FakeJetstream(event_log)
    appeared: dict[str, float] = {}
    rng = random.Random(11)
    text = "Benchmark post: streamed to chat as it happens #starling https://example.org/x"

    # FakeJetstream.start binds port 0; the benchmark needs the port it was given.
    host._server = await serve(
        host._handle, "127.0.0.1", args.port, process_request=host._check_request
    )
    host.port = args.port
    try:
        deadline = time.monotonic() + 45
        while not host.requests and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if not host.requests:
            raise RuntimeError("Starling never subscribed")
        await asyncio.sleep(0.5)  # the hello (options_update) with the wanted DIDs
        total = round(args.rate * args.seconds)
        started = time.perf_counter()
        for seq in range(total):
            due = started + seq / args.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            rkey = b32(seq + 1, 13)
            appeared[rkey] = time.perf_counter()
            await event_log.post(rng.choice(dids), rkey, f"{text} {seq}")
        await asyncio.sleep(2.0)  # the last posts reach the client
    finally:
        await host.stop()
    return {"appeared": appeared, "sent": len(appeared)}


# --- worker: nostr-live (other people publishing signed notes to a relay) ------------


async def nostr_live_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Publish notes by followed authors at a steady rate, once Starling is subscribed."""
    from aionostr.event import Event as AioEvent
    from aionostr.key import PrivateKey
    from websockets.asyncio.client import connect

    keys = [PrivateKey(secret) for secret in nostr_secrets(args.followed)]
    rng = random.Random(13)
    ready = Path(args.ready)
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if not ready.exists():
        raise RuntimeError("Starling never said it was subscribed")
    total = round(args.rate * args.seconds)
    notes = []
    for seq in range(total):  # signed ahead, as each author's own client would
        key = rng.choice(keys)
        event = AioEvent(
            pubkey=key.public_key.hex(),
            content=f"Benchmark note {seq}: streamed to chat as it happens #starling",
            kind=1,
            tags=[],
            created_at=int(time.time()),
        )
        key.sign_event(event)
        notes.append((event.id, json.dumps(["EVENT", event.to_json_object()])))
    appeared: dict[str, float] = {}
    accepted = 0
    async with connect(args.relay, proxy=None, max_size=None) as ws:

        async def read_oks() -> None:
            nonlocal accepted
            async for reply in ws:
                accepted += json.loads(reply)[0] == "OK"

        reader = asyncio.create_task(read_oks())
        started = time.perf_counter()
        for seq, (event_id, wire) in enumerate(notes):
            delay = started + seq / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            appeared[event_id] = time.perf_counter()
            await ws.send(wire)
        await asyncio.sleep(3.0)  # the relay fans the last notes out
        reader.cancel()
    return {"appeared": appeared, "accepted": accepted}


# --- worker: mastodon-live (the fake Mastodon, pushing statuses at a steady rate) ------


async def mastodon_live_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Create the accounts, wait for the stream and its backfill, then post at a steady rate.

    Each status is timed just before `MastodonFake.post` stores it and queues its
    `update` frame to the subscribed stream; it is matched by status id.
    """
    sys.path.insert(0, str(REPO))
    from tests.fakes.mastodon_server import MastodonFake

    fake = MastodonFake(seed="none")
    fake.port = args.port  # start() binds the port it is given
    await fake.start()
    try:
        accts = [f"bench{i}" for i in range(args.followed)]
        ids = [fake.add_account(acct, display_name=f"Bench {acct}")["id"] for acct in accts]
        accounts = Path(args.accounts)
        staged = accounts.with_suffix(".tmp")
        staged.write_text(json.dumps(ids), encoding="utf-8")
        staged.rename(accounts)  # the app never reads half a list
        await fake.wait_subscribed("public:local", within_s=45)
        subscribed = time.perf_counter()
        # On every (re)connection the plugin backfills each account over REST first,
        # holding live frames back until it is done: wait for that before posting.
        deadline = time.monotonic() + 45
        while _backfills(fake) < args.followed and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        backfill_s = time.perf_counter() - subscribed
        await asyncio.sleep(0.5)  # the last backfill answers are read
        rng = random.Random(17)
        text = "Benchmark status: streamed to chat as it happens #starling https://example.org/x"
        appeared: dict[str, float] = {}
        total = round(args.rate * args.seconds)
        started = time.perf_counter()
        for seq in range(total):
            delay = started + seq / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            at = time.perf_counter()
            appeared[fake.post(rng.choice(accts), f"{text} {seq}")["id"]] = at
        await asyncio.sleep(2.0)  # the last statuses reach the client
    finally:
        await fake.stop()
    return {"appeared": appeared, "backfill_s": backfill_s, "backfills": _backfills(fake)}


def _backfills(fake: Any) -> int:
    """REST reads of an account's statuses the fake has answered (the plugin's backfill)."""
    return sum(r.path.endswith("/statuses") and r.method == "GET" for r in fake.requests)


async def _read_accounts(path: Path, timeout_s: float = 45.0) -> list[str]:
    """The account ids `mastodon-live` created (snowflakes: only the server knows them)."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the fake Mastodon never listed its accounts")
        await asyncio.sleep(0.05)
    ids: list[str] = json.loads(path.read_text(encoding="utf-8"))
    return ids


# --- worker: app (the real Starling) -------------------------------------------------


async def app_worker(args: argparse.Namespace) -> dict[str, Any]:
    from bench.harness import BenchChat
    from bot.app import App
    from bot.clock import SystemClock
    from bot.config import load_settings
    from bot.health import HealthBook
    from bot.model import Filters, TargetKind
    from bot.model import Target as Follow
    from bot.store import open_store

    data_dir = Path(args.data_dir)
    settings = load_settings(data_dir=data_dir, allow_private_addresses=True, shutdown_grace_s=1.0)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if args.network == "nostr":
        # {id} keeps the event id in the permalink, which is how sends are matched.
        config = {"relays": args.relay, "web_url": "https://njump.me/{id}"}
        network = load_network("nostr", config, data_dir)
        keys = nostr_pubkeys(args.followed)
    elif args.network == "mastodon":
        sys.path.insert(0, str(REPO))
        from tests.fakes.mastodon_server import MastodonFake, plugin_config

        fake = MastodonFake()  # not started: only its URLs, token and domain
        fake.port = args.port
        # A token makes the plugin stream from the default instance; the polling
        # interval below never comes due, so only the stream delivers.
        config = plugin_config(fake, streaming_url=fake.ws_url)
        network = load_network("mastodon", config, data_dir)
        ids = await _read_accounts(Path(args.accounts))
        keys = [f"{fake.domain}/accounts/{account_id}" for account_id in ids]
    else:
        network = load_bluesky(data_dir, args.port)
        keys = followed_dids(args.followed)
        cache_profiles(network, keys)
    chat = BenchChat()
    clock = SystemClock()
    store = await open_store(settings.db_path)
    app = App(settings, store, {network.name: network}, {chat.name: chat}, clock, HealthBook(clock))
    channels = [chat.channel(f"channel-{c}") for c in range(args.channels)]
    for i, key in enumerate(keys):
        await store.create_subscription(
            channels[i % len(channels)],
            Follow(network.name, TargetKind.ACCOUNT, key, f"account {i}"),
            Filters(),
            1e9,  # polling never comes due in the run: the stream alone delivers
            "bench",
            baseline_keys=[],
            backlog=lambda sub, channel_id: [],
            # What /follow leaves for a Mastodon account with no statuses yet.
            cursor="0" if args.network == "mastodon" else None,
        )
    running = asyncio.create_task(app.run())
    if args.ready:
        await asyncio.sleep(2.0)  # the subscriptions reach the relay
        Path(args.ready).touch()
    cpu0, wall0, busy0 = time.process_time(), time.perf_counter(), machine_busy_s()
    deadline = time.monotonic() + args.seconds + 30
    while len(chat.sends) < args.expect and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    cpu, wall, busy1 = time.process_time() - cpu0, time.perf_counter() - wall0, machine_busy_s()
    app.stop()
    await running
    sent = [(link.rsplit("/", 1)[1], send.at) for send in chat.sends for link in send.links]
    other = None
    if busy0 is not None and busy1 is not None:
        other = max(0.0, (busy1 - busy0 - cpu) / wall * 100)
    return {
        "sent": sent,
        "cpu_busy_pct": cpu / wall * 100,
        "other_cpu_pct": other,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# --- entry point ---------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=MODULE, description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="worker", required=True)
    workers = {
        "blast": "a Jetstream host that sends N events at once",
        "ingest": "the Bluesky plugin's Jetstream consumer, counting",
        "live": "the fake Jetstream, posting at a steady rate",
        "nostr-live": "publish signed notes to a nostr relay at a steady rate",
        "mastodon-live": "the fake Mastodon, pushing statuses at a steady rate",
        "app": "the real App following the accounts over a stream",
    }
    for name, help_text in workers.items():
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--followed", type=int, default=2000)
        p.add_argument("--out", required=True, help="write the figures here as JSON")
        if name in ("blast", "ingest"):
            p.add_argument("--events", type=int, required=True)
            p.add_argument("--share", type=float, required=True)
        if name in ("live", "app", "nostr-live", "mastodon-live"):
            p.add_argument("--rate", type=float, default=200.0)
            p.add_argument("--seconds", type=float, default=10.0)
        if name in ("ingest", "app"):
            p.add_argument("--data-dir", required=True)
        if name == "ingest":
            p.add_argument("--decode-seconds", type=float, default=0.0)
        if name in ("app", "nostr-live"):
            p.add_argument("--relay", default="", help="nostr relay URL")
            p.add_argument("--ready", default="", help="a file the app creates once subscribed")
        if name in ("app", "mastodon-live"):
            p.add_argument("--accounts", default="", help="the fake Mastodon's account ids (JSON)")
        if name == "app":
            p.add_argument("--network", choices=("bluesky", "nostr", "mastodon"), default="bluesky")
            p.add_argument("--channels", type=int, default=50)
            p.add_argument("--expect", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=f"[{args.worker}] %(levelname)s %(message)s")
    run_one = {
        "blast": blast_worker,
        "ingest": ingest_worker,
        "live": live_worker,
        "nostr-live": nostr_live_worker,
        "mastodon-live": mastodon_live_worker,
        "app": app_worker,
    }[args.worker]
    figures = asyncio.run(run_one(args))
    Path(args.out).write_text(json.dumps(figures), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
