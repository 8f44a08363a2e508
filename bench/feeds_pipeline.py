"""Feeds pipeline benchmark: a real Starling polling thousands of local feeds.

Three scenarios, one feed server process each (`python -m tests.feedserver --feeds N
--change F`): nothing changes (every poll is a 304), 10 % of polls see a new item,
every poll sees a new item. In each, Starling runs in its own process, pinned to
its own core (the server gets the other one):

* the real `App`, the real feeds plugin loaded through its entry point, SQLite in
  a temporary directory, and `BenchChat` as the only chat;
* subscriptions are made through `store.create_subscription` with the baseline keys
  and cursor of one real fetch per feed, before the app starts;
* the app then runs as in production (`App.run`): its own scheduler polls at full
  speed because every subscription's interval is 10 ms, so every resource is always
  due and concurrency is bounded by the app's own limits (`max_concurrent_polls`,
  the fetcher's `max_in_flight`). This measures scheduling, supervision, health
  recording and the outbox exactly as they run in production.

The baseline is how most feed bots are written: `feedparser.parse(url, etag=...,
modified=...)` on one feed after the other, a seen-set in memory, and "sending" is
appending to a list. It runs on the same server, pinned to the same core as
Starling, for a fixed time budget over a subset of the feeds.

Run everything with `python -m bench`; this module is also the worker entry point
(`python -m bench.feeds_pipeline starling|baseline|rss ... --out FILE`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import math
import resource
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    Result,
    ServerProcess,
    Target,
    cpu_plan,
    percentile,
    process_cpu_s,
    rss_bytes,
    run_worker,
)

BENCH = "feeds_pipeline"
MODULE = "bench.feeds_pipeline"
INTERVAL_S = 0.01  # every resource always due: the scheduler polls at full speed
FIVE_MINUTES_100K = 100_000 / 300  # polls/s needed for 100,000 feeds every 5 minutes
MIB = 1024 * 1024

# Documents from the feedparser test suite that look like real feeds (several
# modules, namespaces, a long real-world Atom feed), added to the parser corpus.
PARSER_FIXTURES = (
    "wellformed/sanitize/large_atom_feed_that_needs_css_sanitisation.xml",
    "wellformed/namespace/rss2.0NSwithModules.xml",
    "wellformed/namespace/rss1.0withModules.xml",
    "wellformed/namespace/atomthreadingwithentry.xml",
    "wellformed/media-rss/media_group.xml",
    "wellformed/psc/rss2.0simplechapter2items.xml",
    "wellformed/sanitize/item_fullitem_crazy.xml",
)


@dataclass(frozen=True, slots=True)
class Config:
    feeds: int  # subscriptions (one feed each) Starling polls
    channels: int  # chat channels the subscriptions are spread over
    items: int  # items per synthetic feed document (the server's --items)
    warmup_s: float  # Starling runs this long before the measured window
    measure_s: float  # the measured window
    baseline_feeds: int  # feeds the sequential baseline cycles through
    baseline_s: float  # the baseline's time budget
    parser_docs: int  # synthetic documents in the parser corpus
    parser_s: float  # time per parser measurement


FULL = Config(
    feeds=5000,
    channels=50,
    items=10,
    warmup_s=3.0,
    measure_s=15.0,
    baseline_feeds=500,
    baseline_s=12.0,
    parser_docs=500,
    parser_s=3.0,
)
QUICK = Config(
    feeds=1000,
    channels=20,
    items=10,
    warmup_s=1.0,
    measure_s=3.0,
    baseline_feeds=100,
    baseline_s=2.0,
    parser_docs=100,
    parser_s=0.7,
)


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str  # name suffix in results.json
    title: str
    change: float  # the server's --change
    polls_target: float
    pre_age: bool  # fetch every feed items-1 times first so documents hold `items` items


SCENARIOS = (
    Scenario("unchanged", "nothing changes (304)", 0.0, 5000, pre_age=False),
    Scenario("changed_10pct", "10 % of polls see a new item", 0.1, 4000, pre_age=False),
    Scenario("changed_all", "every poll sees a new item", 1.0, 1000, pre_age=True),
)


def log(message: str) -> None:
    print(f"[{BENCH}] {message}", file=sys.stderr, flush=True)


# --- orchestration (the `python -m bench` process) -----------------------------------


def run(*, quick: bool = False) -> list[Result]:
    """Every scenario, the memory probes and the parser measurement, as result rows."""
    cfg = QUICK if quick else FULL
    server_core, bench_core = cpu_plan()
    log(
        f"{cfg.feeds} feeds, {cfg.channels} channels; server on core {server_core}, "
        f"Starling and baseline on core {bench_core}"
    )
    results: list[Result] = []
    parser_docs: list[tuple[str, bytes, str]] = []
    with tempfile.TemporaryDirectory(prefix="starling-bench-") as tmp:
        work = Path(tmp)
        loaded_dir: Path | None = None
        for scenario in SCENARIOS:
            data_dir = work / scenario.key
            server_args = [
                "--port",
                "0",
                "--feeds",
                str(cfg.feeds),
                "--change",
                str(scenario.change),
                "--items",
                str(cfg.items),
            ]
            with ServerProcess(server_args, core=server_core) as server:
                if scenario.pre_age:
                    started = time.perf_counter()
                    asyncio.run(_pre_age(server.base_url, cfg.feeds, cfg.items - 1))
                    log(f"{scenario.key}: feeds aged in {time.perf_counter() - started:.1f} s")
                log(f"{scenario.key}: Starling on {server.base_url}")
                starling = run_worker(
                    MODULE,
                    [
                        "starling",
                        "--url",
                        server.base_url,
                        "--feeds",
                        str(cfg.feeds),
                        "--channels",
                        str(cfg.channels),
                        "--warmup",
                        str(cfg.warmup_s),
                        "--seconds",
                        str(cfg.measure_s),
                        "--data-dir",
                        str(data_dir),
                        "--server-pid",
                        str(server.pid),
                    ],
                    core=bench_core,
                    timeout_s=120 + cfg.feeds / 50 + cfg.warmup_s + cfg.measure_s,
                    out=work / f"{scenario.key}-starling.json",
                )
                log(f"{scenario.key}: baseline (feedparser, sequential)")
                baseline = run_worker(
                    MODULE,
                    [
                        "baseline",
                        "--url",
                        server.base_url,
                        "--feeds",
                        str(cfg.baseline_feeds),
                        "--seconds",
                        str(cfg.baseline_s),
                    ],
                    core=bench_core,
                    timeout_s=120 + cfg.baseline_s + cfg.baseline_feeds / 20,
                    out=work / f"{scenario.key}-baseline.json",
                )
                if scenario.pre_age:
                    parser_docs = _download(server.base_url, cfg.parser_docs)
            results += _scenario_results(scenario, starling, baseline)
            if loaded_dir is None:
                loaded_dir = data_dir
        assert loaded_dir is not None
        log("memory at rest: empty app vs. loaded app")
        results += _memory_results(work, loaded_dir, cfg.feeds, bench_core)
    log("feed parser alone")
    results += _parser_results(parser_docs, cfg.parser_s, bench_core)
    return results


async def _pre_age(base_url: str, feeds: int, rounds: int) -> None:
    """Make each synthetic feed publish `rounds` items (a --change 1.0 server adds one per GET)."""
    import aiohttp

    slots = asyncio.Semaphore(64)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

        async def get(i: int) -> None:
            async with slots, session.get(f"{base_url}/synth/{i}") as resp:
                await resp.read()

        for _ in range(rounds):
            await asyncio.gather(*(get(i) for i in range(feeds)))


def _download(base_url: str, count: int) -> list[tuple[str, bytes, str]]:
    """(url, body, content type) of `count` synthetic documents and the demo feeds."""
    urls = [f"{base_url}/synth/{i}" for i in range(count)]
    urls += [f"{base_url}/feeds/demo-{kind}" for kind in ("rss", "atom", "json")]
    docs = []
    for url in urls:
        with urllib.request.urlopen(url, timeout=10) as resp:
            docs.append((url, resp.read(), resp.headers.get("Content-Type", "")))
    return docs


def _scenario_results(
    scenario: Scenario, starling: dict[str, Any], baseline: dict[str, Any]
) -> list[Result]:
    name = f"{BENCH}/{scenario.key}"

    def row(
        metric: str,
        label: str,
        unit: str,
        *,
        scale: float = 1.0,
        target: Target | None = None,
        compare: bool = True,
    ) -> Result:
        value = starling.get(metric)
        base = baseline.get(metric) if compare else None
        return Result(
            name,
            metric,
            None if value is None else value * scale,
            unit,
            None if base is None else base * scale,
            target,
            label,
        )

    if starling["errors"]:
        log(f"{scenario.key}: WARNING {starling['errors']} fetches failed during the window")
    if starling["unmatched_sends"]:
        log(f"{scenario.key}: WARNING {starling['unmatched_sends']} sends had no fetch time")
    return [
        row("polls_per_s", "polls/s", "1/s", target=Target(">=", scenario.polls_target)),
        row("polls_per_cpu_s", "polls per CPU-second", "1/s"),
        row("items_per_s", "new items/s (fetch → chat)", "1/s"),
        row("latency_p50_ms", "latency p50 fetch → send", "ms"),
        row("latency_p99_ms", "latency p99 fetch → send", "ms", target=Target("<=", 100)),
        row("cpu_per_poll_us", "CPU per poll", "µs"),
        row("cpu_pct_100k_5min", "CPU % for 100k feeds / 5 min", "%"),
        row("cpu_busy_pct", "process CPU busy in window", "%"),
        row("server_cpu_pct", "feed server CPU busy", "%", compare=False),
        row("not_modified_pct", "polls answered 304", "%"),
        row("items_per_document", "items per 200 document", "items"),
        row("peak_rss_mib", "peak RSS", "MiB", compare=False),
    ]


def _memory_results(work: Path, loaded_dir: Path, feeds: int, core: int | None) -> list[Result]:
    empty = run_worker(
        MODULE,
        ["rss", "--data-dir", str(work / "empty")],
        core=core,
        timeout_s=60,
        out=work / "rss-empty.json",
    )
    loaded = run_worker(
        MODULE,
        ["rss", "--data-dir", str(loaded_dir)],
        core=core,
        timeout_s=60,
        out=work / "rss-loaded.json",
    )
    subs = int(loaded["subscriptions"])
    per_sub = (loaded["rss_bytes"] - empty["rss_bytes"]) / max(subs, 1)
    name = f"{BENCH}/memory"
    return [
        Result(name, "subscriptions", subs, "count", label="subscriptions loaded"),
        Result(
            name,
            "rss_at_rest_empty_mib",
            empty["rss_bytes"] / MIB,
            "MiB",
            target=Target("<=", 60),
            label="RSS at rest, empty app",
        ),
        Result(
            name,
            "rss_at_rest_loaded_mib",
            loaded["rss_bytes"] / MIB,
            "MiB",
            target=Target("<=", 60 + subs / 1024, f"(60 + {subs:,} KiB)"),
            label=f"RSS at rest, {subs:,} subscriptions",
        ),
        Result(
            name,
            "bytes_per_subscription",
            per_sub,
            "B",
            target=Target("<=", 1024),
            label="RSS per subscription",
        ),
    ]


def _parser_results(
    docs: list[tuple[str, bytes, str]], seconds: float, core: int | None
) -> list[Result]:
    from plugins.feeds.parse import parse_feed

    fixtures_root = REPO / "tests" / "fixtures" / "feedparser"
    real = [d for d in docs if "/feeds/demo-" in d[0]]
    real += [
        (f"http://fixtures.invalid/{rel}", (fixtures_root / rel).read_bytes(), "")
        for rel in PARSER_FIXTURES
    ]
    corpora = {"synthetic": [d for d in docs if "/synth/" in d[0]], "real_mix": real}
    results = []
    with _pinned_to(core):
        for key, corpus in corpora.items():
            if not corpus:
                continue

            def starling(doc: tuple[str, bytes, str]) -> int:
                url, body, content_type = doc
                return len(parse_feed(body, content_type=content_type, url=url).posts)

            rate = _items_per_s(corpus, starling, seconds)
            base = _items_per_s(corpus, _feedparser_items, seconds)
            results.append(
                Result(
                    f"feeds_parser/{key}",
                    "items_per_s",
                    rate,
                    "1/s",
                    base,
                    Target(">=", 15_000),
                    f"parsed items/s ({len(corpus)} docs)",
                )
            )
    return results


def _feedparser_items(doc: tuple[str, bytes, str]) -> int:
    import io

    import feedparser

    url, body, content_type = doc
    headers = {"content-type": content_type, "content-location": url} if content_type else {}
    return len(feedparser.parse(io.BytesIO(body), response_headers=headers).entries)


def _items_per_s(
    corpus: list[tuple[str, bytes, str]],
    parse: Callable[[tuple[str, bytes, str]], int],
    seconds: float,
) -> float:
    """Items per second over whole passes of the corpus, for at least `seconds`."""
    for doc in corpus:  # warm imports and caches, as a running bot would have them
        parse(doc)
    items = 0
    started = time.process_time()
    while True:
        for doc in corpus:
            items += parse(doc)
        spent = time.process_time() - started
        if spent >= seconds:
            return items / spent


class _pinned_to:
    """Run a block on one core (then restore), like the workers, so figures compare."""

    def __init__(self, core: int | None) -> None:
        self.core = core
        self.saved: set[int] | None = None

    def __enter__(self) -> None:
        if self.core is not None:
            import os

            self.saved = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {self.core})

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            import os

            os.sched_setaffinity(0, self.saved)


# --- worker: Starling ----------------------------------------------------------------


async def starling_worker(args: argparse.Namespace) -> dict[str, Any]:
    from bench.harness import BenchChat, build_app, timed_source
    from bot.config import load_settings
    from bot.model import Filters, TargetKind

    settings = load_settings(
        data_dir=Path(args.data_dir), allow_private_addresses=True, shutdown_grace_s=10.0
    )
    chat = BenchChat()
    app = await build_app(settings, chat)
    source = timed_source(app)

    # Setup: one real fetch per feed gives the baseline keys and the cursor, as /follow does.
    started = time.perf_counter()
    slots = asyncio.Semaphore(100)

    async def first_fetch(i: int) -> tuple[Any, Any]:
        async with slots:
            target = await source.resolve(TargetKind.ACCOUNT, f"{args.url}/synth/{i}")
            return target, await source.fetch(target, None)

    fetched = await asyncio.gather(*(first_fetch(i) for i in range(args.feeds)))
    channels = [chat.channel(f"channel-{c}") for c in range(args.channels)]
    for i, (target, result) in enumerate(fetched):
        await app.store.create_subscription(
            channels[i % len(channels)],
            target,
            Filters(),
            INTERVAL_S,
            "bench",
            baseline_keys=[p.uid for p in result.posts],
            backlog=lambda sub, channel_id: [],
            cursor=result.cursor,
        )
    del fetched
    setup_s = time.perf_counter() - started
    logging.getLogger(__name__).info("setup took %.1f s", setup_s)

    # Run the app as production does; measure a window after a warm-up.
    source.recording = True
    running = asyncio.create_task(app.run())
    await asyncio.sleep(args.warmup)
    before = _snapshot(app, source, chat, args.server_pid)
    await asyncio.sleep(args.seconds)
    after = _snapshot(app, source, chat, args.server_pid)
    queued_at_end = app.dispatcher.queued()
    app.stop()
    await running

    window = after["wall"] - before["wall"]
    polls = after["polls"] - before["polls"]
    cpu = after["cpu"] - before["cpu"]
    documents = after["documents"] - before["documents"]
    latencies: list[float] = []
    unmatched = 0
    for when, key in chat.sends:
        if not before["wall"] <= when <= after["wall"]:
            continue
        fetched_at = source.fetched_at.get(BenchChat.post_uid(key))
        if fetched_at is None:
            unmatched += 1
        else:
            latencies.append(when - fetched_at)
    latencies.sort()
    server_cpu = (
        (after["server_cpu"] - before["server_cpu"]) / window * 100
        if after["server_cpu"] is not None and before["server_cpu"] is not None
        else None
    )
    cpu_per_poll = cpu / polls if polls else math.nan
    return {
        "feeds": args.feeds,
        "setup_s": setup_s,
        "window_s": window,
        "polls": polls,
        "polls_per_s": polls / window,
        "polls_per_cpu_s": polls / cpu if cpu else math.nan,
        "items_per_s": (after["sent"] - before["sent"]) / window,
        "latency_p50_ms": percentile(latencies, 0.50) * 1000,
        "latency_p99_ms": percentile(latencies, 0.99) * 1000,
        "latency_max_ms": (latencies[-1] * 1000) if latencies else math.nan,
        "cpu_per_poll_us": cpu_per_poll * 1e6,
        "cpu_pct_100k_5min": FIVE_MINUTES_100K * cpu_per_poll * 100,
        "cpu_busy_pct": cpu / window * 100,
        "server_cpu_pct": server_cpu,
        "not_modified_pct": (after["not_modified"] - before["not_modified"]) / polls * 100
        if polls
        else math.nan,
        "items_per_document": (after["posts"] - before["posts"]) / documents
        if documents
        else math.nan,
        "errors": after["errors"] - before["errors"],
        "unmatched_sends": unmatched,
        "admitted": after["admitted"] - before["admitted"],
        "queued_at_end": queued_at_end,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _snapshot(app: Any, source: Any, chat: Any, server_pid: int | None) -> dict[str, Any]:
    counts = source.counts
    return {
        "wall": time.perf_counter(),
        "cpu": time.process_time(),
        "server_cpu": process_cpu_s(server_pid) if server_pid else None,
        "polls": counts.polls,
        "not_modified": counts.not_modified,
        "documents": counts.documents,
        "posts": counts.posts,
        "errors": counts.errors,
        "sent": len(chat.sends),
        "admitted": app.relay.admitted,
    }


# --- worker: the baseline ------------------------------------------------------------


def baseline_worker(args: argparse.Namespace) -> dict[str, Any]:
    """The usual feed bot: feedparser fetches each feed in turn; a set remembers ids."""
    import feedparser

    urls = [f"{args.url}/synth/{i}" for i in range(args.feeds)]
    validators: dict[str, tuple[str | None, str | None]] = {}
    seen: set[str] = set()
    outbox: list[str] = []

    def entry_key(entry: Any) -> str:
        return str(entry.get("id") or entry.get("link") or entry.get("title"))

    for url in urls:  # "subscribing": one fetch, remember what is there
        first = feedparser.parse(url)
        validators[url] = (first.get("etag"), first.get("modified"))
        seen.update(entry_key(e) for e in first.entries)

    polls = not_modified = documents = posts = errors = 0
    latencies: list[float] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    deadline = wall0 + args.seconds
    while time.perf_counter() < deadline:
        for url in urls:
            etag, modified = validators[url]
            parsed = feedparser.parse(url, etag=etag, modified=modified)
            fetched = time.perf_counter()
            status = parsed.get("status")
            if status not in (200, 304):
                errors += 1
            else:
                polls += 1
                validators[url] = (parsed.get("etag", etag), parsed.get("modified", modified))
            if status == 304:
                not_modified += 1
            elif status == 200:
                documents += 1
                posts += len(parsed.entries)
                for entry in parsed.entries:
                    key = entry_key(entry)
                    if key in seen:
                        continue
                    seen.add(key)
                    outbox.append(f"{entry.get('title', '')}\n{entry.get('link', '')}")
                    latencies.append(time.perf_counter() - fetched)
            if fetched >= deadline:
                break
    cpu, window = time.process_time() - cpu0, time.perf_counter() - wall0
    latencies.sort()
    cpu_per_poll = cpu / polls if polls else math.nan
    return {
        "feeds": args.feeds,
        "window_s": window,
        "polls": polls,
        "polls_per_s": polls / window,
        "polls_per_cpu_s": polls / cpu if cpu else math.nan,
        "items_per_s": len(latencies) / window,
        "latency_p50_ms": percentile(latencies, 0.50) * 1000,
        "latency_p99_ms": percentile(latencies, 0.99) * 1000,
        "cpu_per_poll_us": cpu_per_poll * 1e6,
        "cpu_pct_100k_5min": FIVE_MINUTES_100K * cpu_per_poll * 100,
        "cpu_busy_pct": cpu / window * 100,
        "not_modified_pct": not_modified / polls * 100 if polls else math.nan,
        "items_per_document": posts / documents if documents else math.nan,
        "errors": errors,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# --- worker: memory at rest ----------------------------------------------------------


async def rss_worker(args: argparse.Namespace) -> dict[str, Any]:
    """RSS of an app that has loaded its subscriptions (as `App.run` does) and is idle."""
    from bench.harness import BenchChat
    from bot.app import App
    from bot.config import load_settings

    settings = load_settings(data_dir=Path(args.data_dir), allow_private_addresses=True)
    chat = BenchChat()
    app = await App.create(settings, chats={chat.name: chat})
    await app.health.load(app.store)
    resources = await app.load_resources()
    await app.dispatcher.recover()
    subscriptions = sum(len(s.followers) for s in app.scheduler.states.values())
    gc.collect()
    await asyncio.sleep(0.2)
    rss = rss_bytes()
    await app.aclose()
    return {"resources": resources, "subscriptions": subscriptions, "rss_bytes": rss}


# --- entry point ---------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=MODULE, description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="worker", required=True)
    star = sub.add_parser("starling", help="run Starling against a feed server")
    star.add_argument("--url", required=True)
    star.add_argument("--feeds", type=int, required=True)
    star.add_argument("--channels", type=int, default=50)
    star.add_argument("--warmup", type=float, default=3.0)
    star.add_argument("--seconds", type=float, default=15.0)
    star.add_argument("--data-dir", required=True)
    star.add_argument("--server-pid", type=int, default=0)
    base = sub.add_parser("baseline", help="run the sequential feedparser baseline")
    base.add_argument("--url", required=True)
    base.add_argument("--feeds", type=int, required=True)
    base.add_argument("--seconds", type=float, default=10.0)
    rss = sub.add_parser("rss", help="RSS at rest of an app loaded from a data dir")
    rss.add_argument("--data-dir", required=True)
    for p in (star, base, rss):
        p.add_argument("--out", required=True, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=f"[{args.worker}] %(levelname)s %(message)s")
    if args.worker == "starling":
        figures = asyncio.run(starling_worker(args))
    elif args.worker == "baseline":
        figures = baseline_worker(args)
    else:
        figures = asyncio.run(rss_worker(args))
    Path(args.out).write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
