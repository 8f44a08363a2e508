"""Feeds pipeline benchmark: a real Starling polling thousands of local feeds.

Three scenarios, one feed server process each (`python -m tests.feedserver --feeds N
--change F`): nothing changes (every poll is a 304), 10 % of polls see a new item,
every poll sees a new item. In each, Starling runs in its own process, pinned to
its own core (the server gets the other one):

* the real `App`, the real feeds plugin loaded through its entry point, SQLite in
  a temporary directory, and `BenchChat` as the only chat;
* subscriptions are made through `store.create_subscription` with the baseline keys
  and cursor of one real fetch per feed, before the app starts;
* the app then runs as in production (`App.run`, which loads the subscriptions into
  its scheduler), and its own scheduler drives the polls. First paced: every
  subscription's interval is N / 333.3 s, the rate of 100,000 feeds every five
  minutes. Then at full speed: every interval becomes 10 ms, so every resource is
  always due and concurrency is bounded only by the app's own limits
  (`max_concurrent_polls`, the fetcher's `max_in_flight`). Driving the real
  scheduler rather than calling `relay.poll` from a harness loop means scheduling,
  supervision, health recording, the outbox and the delivery lanes are all measured
  exactly as they run in production.

A fourth scenario, `timely`, measures the issue's other target, "a polled item is
delivered within its poll interval + 2 s": at the same pace, the server publishes
new items at real times (`--publish-rate`, about one per ten polls), each stamped
with its publish time in its link, and the worker times publish → chat send.

The baseline is how most feed bots are written: `feedparser.parse(url, etag=...,
modified=...)` on one feed after the other, a seen-set in memory, and "sending" is
appending to a list. It runs on the same server, pinned to the same core as
Starling, for a fixed time budget over a subset of the feeds.

Run everything with `python -m bench`; this module is also the worker entry point
(`python -m bench.feeds_pipeline starling|timely|baseline|rss ... --out FILE`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import json
import logging
import math
import os
import re
import resource
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    Result,
    ServerProcess,
    Target,
    cpu_plan,
    machine_busy_s,
    percentile,
    process_cpu_s,
    progress,
    rss_bytes,
    run_worker,
)

BENCH = "feeds_pipeline"
MODULE = "bench.feeds_pipeline"
INTERVAL_S = 0.01  # every resource always due: the scheduler polls at full speed
FIVE_MINUTES_100K = 100_000 / 300  # polls/s needed for 100,000 feeds every 5 minutes
MIB = 1024 * 1024
# The timely scenario: new items per poll (at the 100k pace, ≈ 33 items/s), and the slack
# the issue allows on top of the poll interval ("within its poll interval + 2 s").
TIMELY_ITEMS_PER_POLL = 0.1
TIMELY_SLACK_S = 2.0
# A timed item's link, as the feed server writes it: /synth/<feed>/<version>?published_ms=<ms>
TIMED_LINK = re.compile(r"/synth/(\d+)/(\d+)\?published_ms=(\d+)$")
FIXTURES = REPO / "tests" / "fixtures"

# Real-world-shaped documents for the parser: Starling's own hand-written feeds and,
# from the feedparser test suite, feeds with modules and namespaces and a long real
# blog feed. Several of these take the slower feedparser path, as such feeds do.
PARSER_FIXTURES = (
    "feeds/rss20.xml",
    "feeds/rss20_no_guid.xml",
    "feeds/atom10.xml",
    "feeds/jsonfeed10.json",
    "feeds/jsonfeed11.json",
    "feedparser/wellformed/sanitize/large_atom_feed_that_needs_css_sanitisation.xml",
    "feedparser/wellformed/namespace/rss2.0NSwithModules.xml",
    "feedparser/wellformed/namespace/rss1.0withModules.xml",
    "feedparser/wellformed/namespace/atomthreadingwithentry.xml",
    "feedparser/wellformed/media-rss/media_group.xml",
    "feedparser/wellformed/psc/rss2.0simplechapter2items.xml",
    "feedparser/wellformed/sanitize/item_fullitem_crazy.xml",
)
FIXTURE_TYPES = {".json": "application/feed+json", ".xml": "application/xml"}


@dataclass(frozen=True, slots=True)
class Config:
    feeds: int  # subscriptions (one feed each) Starling polls
    channels: int  # chat channels the subscriptions are spread over
    items: int  # items per synthetic feed document (the server's --items)
    paced_s: float  # measured window at 333 polls/s (100,000 feeds every 5 minutes)
    # The paced phase runs this long before its window: one whole polling cycle (every
    # feed polled once after the start), so the windows measure a bot in its steady
    # state, not the first cycle after a restart (which rebuilds every item once).
    paced_warmup_s: float
    warmup_s: float  # full speed runs this long before its measured window
    measure_s: float  # the full-speed measured window
    baseline_feeds: int  # feeds the sequential baseline cycles through
    baseline_s: float  # the baseline's time budget
    parser_docs: int  # synthetic documents in the parser corpus
    parser_s: float  # CPU time per parser measurement
    # The timely scenario's window (after `paced_warmup_s`): items published in it that
    # had interval + 2 s left before its end are the ones measured.
    timely_s: float


FULL = Config(
    feeds=5000,
    channels=50,
    items=10,
    paced_s=8.0,
    paced_warmup_s=16.0,  # 5,000 feeds at 333 polls/s: 15 s per cycle
    warmup_s=3.0,
    measure_s=15.0,
    baseline_feeds=500,
    baseline_s=12.0,
    parser_docs=500,
    parser_s=3.0,
    timely_s=40.0,  # 15 s interval: items of the first 23 s (≈ 770) are measured
)
QUICK = Config(
    feeds=1000,
    channels=20,
    items=5,
    paced_s=1.5,
    paced_warmup_s=3.5,  # 1,000 feeds at 333 polls/s: 3 s per cycle
    warmup_s=0.5,
    measure_s=2.0,
    baseline_feeds=50,
    baseline_s=1.0,
    parser_docs=100,
    parser_s=0.3,
    timely_s=8.0,  # 3 s interval: items of the first 3 s (≈ 100) are measured
)


@dataclass(frozen=True, slots=True)
class Scenario:
    key: str  # name suffix in results.json
    change: float  # the server's --change
    polls_target: float
    pre_age: bool  # fetch every feed items-1 times first so documents hold `items` items
    # The headline, "100,000 feeds every 5 minutes on one core at under 10 % CPU", is
    # judged where feeds behave like feeds (most polls 304); a world where every feed
    # changes every 5 minutes is the stress case, reported without that target.
    headline: bool = False


SCENARIOS = (
    Scenario("unchanged", 0.0, 5000, pre_age=False, headline=True),
    Scenario("changed_10pct", 0.1, 4000, pre_age=False, headline=True),
    Scenario("changed_all", 1.0, 1000, pre_age=True),
)

Doc = tuple[str, bytes, str]  # (url, body, content type)


def log(message: str) -> None:
    progress(BENCH, message)


# --- orchestration (the `python -m bench` process) -----------------------------------


def run(*, quick: bool = False) -> list[Result]:
    """Every scenario, the memory probes and the parser measurement, as result rows."""
    cfg = QUICK if quick else FULL
    server_core, bench_core = cpu_plan()
    log(
        f"{cfg.feeds:,} feeds over {cfg.channels} channels; feed server on core "
        f"{server_core}, Starling and the baseline on core {bench_core}"
    )
    results: list[Result] = []
    synthetic: list[Doc] = []
    with tempfile.TemporaryDirectory(prefix="starling-bench-") as tmp:
        work = Path(tmp)
        for scenario in SCENARIOS:
            server_args = ["--port", "0", "--feeds", str(cfg.feeds)]
            server_args += ["--change", str(scenario.change), "--items", str(cfg.items)]
            with ServerProcess(server_args, core=server_core) as server:
                if scenario.pre_age:
                    asyncio.run(_pre_age(server.base_url, cfg.feeds, cfg.items - 1))
                    log(f"{scenario.key}: every feed now holds {cfg.items} items")
                starling = _run_starling(cfg, scenario, server, work, bench_core)
                baseline = _run_baseline(cfg, scenario, server, work, bench_core)
                if scenario.pre_age:
                    synthetic = _download(server.base_url, cfg.parser_docs)
            log(
                f"{scenario.key}: Starling {starling['full']['polls_per_s']:,.0f} polls/s, "
                f"baseline {baseline['polls_per_s']:,.0f} polls/s"
            )
            results += _scenario_results(scenario, starling, baseline)
        results += _run_timely(cfg, work, server_core, bench_core)
        log("memory at rest: empty app vs. loaded app")
        results += _memory_results(work, work / SCENARIOS[0].key, bench_core)
    log("feed parser alone")
    results += _parser_results(synthetic, cfg.parser_s, bench_core)
    return results


def _run_starling(
    cfg: Config, scenario: Scenario, server: ServerProcess, work: Path, core: int | None
) -> dict[str, Any]:
    log(f"{scenario.key}: Starling against {server.base_url} (--change {scenario.change})")
    args = ["starling", "--url", server.base_url, "--server-pid", str(server.pid)]
    args += ["--feeds", str(cfg.feeds), "--channels", str(cfg.channels)]
    args += ["--paced-seconds", str(cfg.paced_s), "--paced-warmup", str(cfg.paced_warmup_s)]
    args += ["--warmup", str(cfg.warmup_s), "--seconds", str(cfg.measure_s)]
    args += ["--data-dir", str(work / scenario.key)]
    budget = 60 + cfg.feeds / 200 + cfg.paced_s + cfg.paced_warmup_s + cfg.warmup_s + cfg.measure_s
    return run_worker(
        MODULE, args, core=core, timeout_s=budget, out=work / f"{scenario.key}-starling.json"
    )


def _run_timely(
    cfg: Config, work: Path, server_core: int | None, bench_core: int | None
) -> list[Result]:
    """Publish → chat send at the 100k pace, items published at real times (paced only)."""
    interval = cfg.feeds / FIVE_MINUTES_100K
    rate = FIVE_MINUTES_100K * TIMELY_ITEMS_PER_POLL
    server_args = ["--port", "0", "--feeds", str(cfg.feeds), "--items", str(cfg.items)]
    server_args += ["--publish-rate", f"{rate:.3f}"]
    with ServerProcess(server_args, core=server_core) as server:
        log(
            f"timely: Starling against {server.base_url}, interval {interval:.1f} s, "
            f"{rate:.1f} items published/s"
        )
        args = ["timely", "--url", server.base_url, "--server-pid", str(server.pid)]
        args += ["--feeds", str(cfg.feeds), "--channels", str(cfg.channels)]
        args += ["--interval", str(interval), "--warmup", str(cfg.paced_warmup_s)]
        args += ["--seconds", str(cfg.timely_s), "--data-dir", str(work / "timely")]
        budget = 60 + cfg.feeds / 200 + cfg.paced_warmup_s + cfg.timely_s + interval
        figures = run_worker(
            MODULE, args, core=bench_core, timeout_s=budget, out=work / "timely-starling.json"
        )
    log(
        f"timely: {figures['on_time']:,} of {figures['measured']:,} items within "
        f"{figures['budget_s']:.1f} s, max {figures['latency_max_s']:.2f} s"
    )
    return _timely_results(figures)


def _timely_results(figures: dict[str, Any]) -> list[Result]:
    name = f"{BENCH}/timely"
    budget, measured = figures["budget_s"], figures["measured"]
    if figures["undelivered"]:
        log(f"timely: WARNING {figures['undelivered']} measured items never reached the chat")
    if (figures.get("other_cpu_pct") or 0) > 25:
        log(f"timely: NOTE other processes used {figures['other_cpu_pct']:.0f} % CPU")

    def row(metric: str, label: str, unit: str, target: Target | None = None) -> Result:
        return Result(name, metric, figures.get(metric), unit, None, target, label)

    return [
        row(
            "on_time_pct",
            f"delivered within interval + 2 s ({budget:.0f} s), {measured:,} items",
            "%",
            Target(">=", 100),
        ),
        row("latency_p50_s", "publish → chat send p50", "s"),
        row("latency_p99_s", "publish → chat send p99", "s"),
        row("latency_max_s", "publish → chat send max (∞: not delivered)", "s"),
        row("interval_s", "poll interval (feeds ÷ 333.3 polls/s)", "s"),
        row("fetch_send_p99_ms", "fetch → chat send p99, same items", "ms"),
        row("published_per_s", "items published/s (server, whole window)", "1/s"),
        row("polls_per_s", "polls/s in the window", "1/s"),
        row("cpu_busy_pct", "process CPU busy", "%"),
        row("other_cpu_pct", "other processes' CPU (noise)", "%"),
    ]


def _run_baseline(
    cfg: Config, scenario: Scenario, server: ServerProcess, work: Path, core: int | None
) -> dict[str, Any]:
    log(f"{scenario.key}: baseline (feedparser, one feed after the other)")
    args = ["baseline", "--url", server.base_url]
    args += ["--feeds", str(cfg.baseline_feeds), "--seconds", str(cfg.baseline_s)]
    budget = 60 + cfg.baseline_feeds / 20 + cfg.baseline_s
    return run_worker(
        MODULE, args, core=core, timeout_s=budget, out=work / f"{scenario.key}-baseline.json"
    )


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


def _download(base_url: str, count: int) -> list[Doc]:
    """`count` synthetic documents and the server's three demo feeds (RSS, Atom, JSON)."""
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
    full, paced = starling["full"], starling.get("paced", {})
    for phase, figures in (("full speed", full), ("paced", paced)):
        if figures.get("errors"):
            log(f"{scenario.key}: WARNING {figures['errors']} fetches failed ({phase})")
        if figures.get("unmatched_sends"):
            log(f"{scenario.key}: WARNING {figures['unmatched_sends']} posts sent, never fetched")
        if (figures.get("other_cpu_pct") or 0) > 25:
            log(
                f"{scenario.key}: NOTE other processes used {figures['other_cpu_pct']:.0f} % "
                f"CPU during the {phase} window; trust 'polls per CPU-second' over 'polls/s'"
            )

    def row(
        metric: str,
        label: str,
        unit: str,
        target: Target | None = None,
        *,
        figures: dict[str, Any] = full,
        suffix: str = "",
        compare: bool = True,
    ) -> Result:
        value = figures.get(metric)
        base = baseline.get(metric) if compare else None
        return Result(name, metric + suffix, value, unit, base, target, label)

    rows = [
        row(
            "polls_per_s",
            "polls/s (full speed, 1 core)",
            "1/s",
            Target(">=", scenario.polls_target),
        ),
        row("polls_per_cpu_s", "polls per CPU-second", "1/s"),
        row("items_per_s", "new items/s, fetch → chat → record", "1/s"),
        # At full speed the process is saturated on purpose, so these are queueing
        # figures, not the target's: "p99 under 100 ms from fetch to the chat request
        # when the pacing allows" is the paced rows below.
        row("latency_p50_ms", "latency p50, fetch → chat send (full speed, saturated)", "ms"),
        row("latency_p99_ms", "latency p99, fetch → chat send (full speed, queueing)", "ms"),
        row("cpu_per_poll_us", "CPU per poll", "µs"),
        row("cpu_pct_100k_5min", "CPU % for 100k feeds / 5 min (derived)", "%"),
    ]
    if paced:
        rows += [
            row(
                "polls_per_s",
                "polls/s (paced)",
                "1/s",
                figures=paced,
                suffix="_paced",
                compare=False,
            ),
            row(
                "cpu_busy_pct",
                "CPU % for 100k feeds / 5 min (measured)",
                "%",
                Target("<=", 10) if scenario.headline else None,
                figures=paced,
                suffix="_paced",
                compare=False,
            ),
        ]
        if paced.get("latency_samples"):
            rows += [
                row(
                    "latency_p50_ms",
                    "latency p50 at that pace",
                    "ms",
                    figures=paced,
                    suffix="_paced",
                    compare=False,
                ),
                row(
                    "latency_p99_ms",
                    "latency p99 at that pace",
                    "ms",
                    Target("<=", 100),
                    figures=paced,
                    suffix="_paced",
                    compare=False,
                ),
            ]
    rows += [
        row("cpu_busy_pct", "process CPU busy (full speed)", "%"),
        row("server_cpu_pct", "feed server CPU busy", "%", compare=False),
        row("other_cpu_pct", "other processes' CPU (noise)", "%", compare=False),
        row("not_modified_pct", "polls answered 304", "%"),
        row("items_per_document", "items per 200 document", "items"),
        Result(name, "peak_rss_mib", starling["peak_rss_mib"], "MiB", label="peak RSS"),
    ]
    return rows


def _memory_results(work: Path, loaded_dir: Path, core: int | None) -> list[Result]:
    def probe(data_dir: Path, label: str) -> dict[str, Any]:
        args = ["rss", "--data-dir", str(data_dir)]
        return run_worker(MODULE, args, core=core, timeout_s=60, out=work / f"rss-{label}.json")

    empty = probe(work / "empty", "empty")
    loaded = probe(loaded_dir, "loaded")
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
            label="RSS at rest, no subscriptions",
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


def _parser_results(synthetic: list[Doc], seconds: float, core: int | None) -> list[Result]:
    """parse_feed alone over two corpora, against feedparser.parse over the same bytes."""
    from plugins.feeds.parse import parse_feed

    real = [d for d in synthetic if "/feeds/demo-" in d[0]]
    for rel in PARSER_FIXTURES:
        path = FIXTURES / rel
        real.append(
            (
                f"https://feeds.example.org/{path.name}",
                path.read_bytes(),
                FIXTURE_TYPES.get(path.suffix, ""),
            )
        )
    corpora = {"synthetic": [d for d in synthetic if "/synth/" in d[0]], "real_mix": real}

    def starling(doc: Doc) -> int:
        url, body, content_type = doc
        return len(parse_feed(body, content_type=content_type, url=url).posts)

    results = []
    with _pinned_to(core):
        for key, corpus in corpora.items():
            if not corpus:
                continue
            rate = _items_per_s(corpus, starling, seconds)
            base = _items_per_s(corpus, _feedparser_items, seconds)
            items = sum(starling(doc) for doc in corpus)
            results.append(
                Result(
                    f"feeds_parser/{key}",
                    "items_per_s",
                    rate,
                    "1/s",
                    base,
                    Target(">=", 15_000),
                    f"parsed items/s ({len(corpus)} docs, {items / len(corpus):.1f} items each)",
                )
            )
    return results


def _feedparser_items(doc: Doc) -> int:
    import feedparser  # not at module level: the `rss` worker must not carry it

    url, body, content_type = doc
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    return len(feedparser.parse(io.BytesIO(body), response_headers=headers).entries)


def _items_per_s(corpus: list[Doc], parse: Callable[[Doc], int], seconds: float) -> float:
    """Items per CPU-second over whole passes of the corpus, for at least `seconds`."""
    for doc in corpus:  # warm imports and caches, as a running bot has them
        parse(doc)
    items = 0
    started = time.process_time()
    while True:
        for doc in corpus:
            items += parse(doc)
        spent = time.process_time() - started
        if spent >= seconds:
            return items / spent


@contextlib.contextmanager
def _pinned_to(core: int | None) -> Iterator[None]:
    """Run a block on one core, like the workers, so the figures compare."""
    if core is None:
        yield
        return
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


# --- worker: Starling ----------------------------------------------------------------


async def _subscribed_app(args: argparse.Namespace, interval_s: float) -> tuple[Any, Any, Any]:
    """The real app with `args.feeds` subscriptions polled every `interval_s`, not yet running.

    Setup: one real fetch per feed gives the baseline keys and the cursor, as /follow does.
    Returns (app, timed source, chat).
    """
    from bench.harness import BenchChat, build_app, timed_source
    from bot.config import load_settings
    from bot.model import Filters, TargetKind

    settings = load_settings(
        data_dir=Path(args.data_dir), allow_private_addresses=True, shutdown_grace_s=1.0
    )
    chat = BenchChat()
    app = await build_app(settings, chat)
    source = timed_source(app)
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
            interval_s,
            "bench",
            baseline_keys=[p.uid for p in result.posts],
            backlog=lambda sub, channel_id: [],
            cursor=result.cursor,
        )
    del fetched
    return app, source, chat


async def starling_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Set up `args.feeds` subscriptions, run the app, measure a paced and a full-speed phase."""
    paced_interval = args.feeds / args.paced_rate
    started = time.perf_counter()
    app, source, chat = await _subscribed_app(
        args, paced_interval if args.paced_seconds else INTERVAL_S
    )
    setup_s = time.perf_counter() - started

    # The app runs as in production; `App.run` loads the subscriptions into the scheduler.
    source.recording = True
    running = asyncio.create_task(app.run())
    figures: dict[str, Any] = {"feeds": args.feeds, "setup_s": setup_s}
    if args.paced_seconds:
        # Paced: each feed once per `paced_interval`, i.e. `paced_rate` polls/s in all.
        figures["paced"] = await _measure(
            app, source, chat, args, args.paced_warmup, args.paced_seconds
        )
        for state in list(app.scheduler.states.values()):
            state.interval_s = INTERVAL_S
            app.scheduler.poll_now(state.id)
    # Full speed: every resource is always due; the app's own concurrency limits bound it.
    figures["full"] = await _measure(
        app, source, chat, args, args.warmup, args.seconds, profile=args.profile
    )
    app.stop()
    await running
    figures["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


async def _measure(
    app: Any,
    source: Any,
    chat: Any,
    args: argparse.Namespace,
    warmup_s: float,
    seconds: float,
    *,
    profile: str | None = None,
) -> dict[str, Any]:
    """Figures for one window of `seconds` after `warmup_s`; the app keeps running."""
    await asyncio.sleep(warmup_s)
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    before = _snapshot(app, source, chat, args.server_pid)
    await asyncio.sleep(seconds)
    after = _snapshot(app, source, chat, args.server_pid)
    if profiler is not None and profile:
        profiler.disable()
        profiler.dump_stats(profile)

    window = after["wall"] - before["wall"]
    polls = after["polls"] - before["polls"]
    cpu = after["cpu"] - before["cpu"]
    documents = after["documents"] - before["documents"]
    latencies: list[float] = []
    unmatched = digests = 0
    for send in chat.sends[before["sent"] : after["sent"]]:
        digests += len(send.links) > 1
        for link in send.links:
            fetched_at = source.fetched_at.get(link)
            if fetched_at is None:
                unmatched += 1
            else:
                latencies.append(send.at - fetched_at)
    latencies.sort()
    server_cpu = other_cpu = None
    if after["server_cpu"] is not None and before["server_cpu"] is not None:
        server_cpu = (after["server_cpu"] - before["server_cpu"]) / window * 100
        if after["machine_busy"] is not None:
            machine = (after["machine_busy"] - before["machine_busy"]) / window * 100
            other_cpu = max(0.0, machine - server_cpu - cpu / window * 100)
    cpu_per_poll = cpu / polls if polls else math.nan
    return {
        "window_s": window,
        "polls": polls,
        "polls_per_s": polls / window,
        "polls_per_cpu_s": polls / cpu if cpu else math.nan,
        "items_per_s": (after["delivered"] - before["delivered"]) / window,
        "sends_per_s": (after["sent"] - before["sent"]) / window,
        "digests": digests,
        "latency_samples": len(latencies),
        "latency_p50_ms": percentile(latencies, 0.50) * 1000,
        "latency_p99_ms": percentile(latencies, 0.99) * 1000,
        "latency_max_ms": (latencies[-1] * 1000) if latencies else math.nan,
        "cpu_per_poll_us": cpu_per_poll * 1e6,
        "cpu_pct_100k_5min": FIVE_MINUTES_100K * cpu_per_poll * 100,
        "cpu_busy_pct": cpu / window * 100,
        "server_cpu_pct": server_cpu,
        "other_cpu_pct": other_cpu,
        "not_modified_pct": (after["not_modified"] - before["not_modified"]) / polls * 100
        if polls
        else math.nan,
        "items_per_document": (after["posts"] - before["posts"]) / documents
        if documents
        else math.nan,
        "errors": after["errors"] - before["errors"],
        "unmatched_sends": unmatched,
        "admitted": after["admitted"] - before["admitted"],
        "queued_at_end": app.dispatcher.queued(),
    }


async def timely_worker(args: argparse.Namespace) -> dict[str, Any]:
    """Publish → chat send for items the server published at real times, at a steady pace.

    Every feed is polled each `args.interval` by the app's own scheduler. After one whole
    cycle (`args.warmup`), a window of `args.seconds`: the items published in it at least
    interval + 2 s before its end are measured, each from its publish time (written by the
    server into its link) to the chat send that carried it. After the window the worker
    waits for the measured items still missing, up to another interval + 2 s; an item
    that never arrives counts as late.
    """
    app, source, chat = await _subscribed_app(args, args.interval)
    source.recording = True  # fetch times, for the fetch → send part of the same items
    running = asyncio.create_task(app.run())
    await asyncio.sleep(args.warmup)
    first_send = len(chat.sends)
    before = _snapshot(app, source, chat, args.server_pid)
    start = time.time()
    await asyncio.sleep(args.seconds)
    end = time.time()
    after = _snapshot(app, source, chat, args.server_pid)
    budget = args.interval + TIMELY_SLACK_S
    published = await _published(args.url, start, end)
    cutoff_ms = (end - budget) * 1000
    expected = {(i, v): ms for i, v, ms in published if ms < cutoff_ms}

    sent: dict[tuple[int, int], tuple[float, float, str]] = {}  # item: (wall, perf, link)
    scanned = first_send
    deadline = time.monotonic() + budget
    while True:
        for send in chat.sends[scanned:]:
            for link in send.links:
                match = TIMED_LINK.search(link)
                if match:
                    item = (int(match[1]), int(match[2]))
                    sent.setdefault(item, (send.wall, send.at, link))
        scanned = len(chat.sends)
        if all(item in sent for item in expected) or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.1)
    app.stop()
    await running

    latencies: list[float] = []
    fetch_to_send: list[float] = []
    for item, ms in expected.items():
        if item not in sent:
            latencies.append(math.inf)
            continue
        wall, at, link = sent[item]
        latencies.append(wall - ms / 1000)
        fetched_at = source.fetched_at.get(link)
        if fetched_at is not None:
            fetch_to_send.append(at - fetched_at)
    latencies.sort()
    fetch_to_send.sort()
    on_time = sum(latency <= budget for latency in latencies)
    window = after["wall"] - before["wall"]
    cpu = after["cpu"] - before["cpu"]
    other_cpu = None
    if None not in (before["server_cpu"], after["server_cpu"], before["machine_busy"]):
        server_cpu = after["server_cpu"] - before["server_cpu"]
        machine = after["machine_busy"] - before["machine_busy"]
        other_cpu = max(0.0, machine - server_cpu - cpu) / window * 100
    return {
        "feeds": args.feeds,
        "interval_s": args.interval,
        "budget_s": budget,
        "window_s": window,
        "published": len(published),
        "published_per_s": len(published) / (end - start),
        "measured": len(expected),
        "on_time": on_time,
        "on_time_pct": on_time / len(expected) * 100 if expected else math.nan,
        "undelivered": sum(item not in sent for item in expected),
        "latency_p50_s": percentile(latencies, 0.50),
        "latency_p99_s": percentile(latencies, 0.99),
        "latency_max_s": latencies[-1] if latencies else math.nan,
        "fetch_send_samples": len(fetch_to_send),
        "fetch_send_p99_ms": percentile(fetch_to_send, 0.99) * 1000,
        "polls_per_s": (after["polls"] - before["polls"]) / window,
        "cpu_busy_pct": cpu / window * 100,
        "other_cpu_pct": other_cpu,
        "errors": after["errors"] - before["errors"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


async def _published(base_url: str, since: float, until: float) -> list[tuple[int, int, int]]:
    """The server's timed items published in [since, until) (wall clock, s): (feed, version, ms)."""
    import aiohttp

    query = {"since_ms": str(int(since * 1000)), "until_ms": str(int(until * 1000))}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base_url}/_control/synth/published", params=query) as resp,
    ):
        resp.raise_for_status()
        return [(int(i), int(v), int(ms)) for i, v, ms in await resp.json()]


def _snapshot(app: Any, source: Any, chat: Any, server_pid: int | None) -> dict[str, Any]:
    counts = source.counts
    return {
        "wall": time.perf_counter(),
        "cpu": time.process_time(),
        "server_cpu": process_cpu_s(server_pid) if server_pid else None,
        "machine_busy": machine_busy_s(),
        "polls": counts.polls,
        "not_modified": counts.not_modified,
        "documents": counts.documents,
        "posts": counts.posts,
        "errors": counts.errors,
        "sent": len(chat.sends),
        "admitted": app.relay.admitted,
        "delivered": app.dispatcher.delivered,
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
    from bench.harness import BenchChat, build_app
    from bot.config import load_settings

    settings = load_settings(data_dir=Path(args.data_dir), allow_private_addresses=True)
    app = await build_app(settings, BenchChat())
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
    star.add_argument("--paced-seconds", type=float, default=0.0, help="0 skips the paced phase")
    star.add_argument("--paced-rate", type=float, default=FIVE_MINUTES_100K, help="polls/s")
    star.add_argument("--paced-warmup", type=float, default=1.0)
    star.add_argument("--data-dir", required=True)
    star.add_argument("--server-pid", type=int, default=0)
    star.add_argument("--profile", help="cProfile the measured window into this file")
    timely = sub.add_parser("timely", help="publish → chat send at a steady pace")
    timely.add_argument("--url", required=True)
    timely.add_argument("--feeds", type=int, required=True)
    timely.add_argument("--channels", type=int, default=50)
    timely.add_argument("--interval", type=float, required=True, help="each feed's poll interval")
    timely.add_argument("--warmup", type=float, required=True, help="one whole polling cycle")
    timely.add_argument("--seconds", type=float, default=40.0)
    timely.add_argument("--data-dir", required=True)
    timely.add_argument("--server-pid", type=int, default=0)
    base = sub.add_parser("baseline", help="run the sequential feedparser baseline")
    base.add_argument("--url", required=True)
    base.add_argument("--feeds", type=int, required=True)
    base.add_argument("--seconds", type=float, default=10.0)
    rss = sub.add_parser("rss", help="RSS at rest of an app loaded from a data dir")
    rss.add_argument("--data-dir", required=True)
    for p in (star, timely, base, rss):
        p.add_argument("--out", required=True, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=f"[{args.worker}] %(levelname)s %(message)s")
    if args.worker == "starling":
        figures = asyncio.run(starling_worker(args))
    elif args.worker == "timely":
        figures = asyncio.run(timely_worker(args))
    elif args.worker == "baseline":
        figures = baseline_worker(args)
    else:
        figures = asyncio.run(rss_worker(args))
    Path(args.out).write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
