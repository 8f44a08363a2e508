"""Prometheus metrics: request outcomes as they happen, app state read at scrape time.

Each app has its own `CollectorRegistry` (never the process-wide default), so
several apps can run in one process. Request counters are labelled by network and
outcome only: with 100k feeds on tens of thousands of hosts, a host label would
make the series count unbounded. Hosts appear individually only while they are
not up, and then at most `max_host_series` of them, worst first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from bot.dispatch import Dispatcher
from bot.errors import Outcome
from bot.health import HealthBook
from bot.outage import HostState, OutageWatch
from bot.relay import Relay
from bot.scheduler import Scheduler
from bot.statuspages import INDICATORS, StatusPages
from bot.supervise import Supervisor

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# Upstream requests take from milliseconds (a 304) to the 20 s feed timeout.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
_SEVERITY = {HostState.DOWN: 0, HostState.RECOVERING: 1, HostState.DEGRADED: 2, HostState.UP: 3}


class Metrics:
    """Counts every upstream request (a `HealthBook` listener) and renders all metrics."""

    def __init__(
        self,
        *,
        scheduler: Scheduler,
        dispatcher: Dispatcher,
        relay: Relay,
        outages: OutageWatch,
        health: HealthBook,
        supervisor: Supervisor,
        status_pages: StatusPages | None = None,
        max_host_series: int = 100,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._requests = Counter(
            "starling_upstream_requests",
            "Upstream requests by network and outcome (ok, not_modified, timeout, http_5xx, …).",
            ["network", "outcome"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "starling_upstream_request_seconds",
            "How long upstream requests took, by network.",
            ["network"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        # labels() takes a lock and builds a key per call; the hot path reuses children.
        self._counters: dict[tuple[str, Outcome], Counter] = {}
        self._timers: dict[str, Histogram] = {}
        self.outbox_rows: int | None = None  # the stored outbox, refreshed by its reader
        self._app = _AppCollector(
            self,
            scheduler,
            dispatcher,
            relay,
            outages,
            health,
            supervisor,
            status_pages,
            max_host_series,
        )
        self.registry.register(self._app)

    def observe(
        self, network: str, host: str, outcome: Outcome, detail: str, latency_s: float = 0.0
    ) -> None:
        """The `HealthBook` listener: called on every upstream request outcome."""
        counter = self._counters.get((network, outcome))
        if counter is None:
            counter = self._counters[(network, outcome)] = self._requests.labels(
                network, outcome.value
            )
        counter.inc()
        if latency_s > 0:  # outcomes recorded without a timing would skew the histogram
            timer = self._timers.get(network)
            if timer is None:
                timer = self._timers[network] = self._latency.labels(network)
            timer.observe(latency_s)

    def summary(self) -> dict[str, int]:
        """The headline figures, for `/healthz` and the status page."""
        states = self._app.scheduler.states.values()
        return {
            "resources": len(states),
            "subscriptions": sum(len(s.followers) for s in states),
            "outbox_queued": self._app.dispatcher.queued(),
            "delivered": self._app.dispatcher.delivered,
            "open_outages": len(self._app.outages.open),
        }

    def render(self) -> bytes:
        """Everything, in the Prometheus text format (`CONTENT_TYPE`)."""
        return generate_latest(self.registry)


class _AppCollector:
    """Reads the app's own state at scrape time; nothing here touches the database."""

    def __init__(
        self,
        metrics: Metrics,
        scheduler: Scheduler,
        dispatcher: Dispatcher,
        relay: Relay,
        outages: OutageWatch,
        health: HealthBook,
        supervisor: Supervisor,
        status_pages: StatusPages | None,
        max_host_series: int,
    ) -> None:
        self._metrics = metrics
        self.scheduler = scheduler
        self.dispatcher = dispatcher
        self.relay = relay
        self.outages = outages
        self.health = health
        self.supervisor = supervisor
        self._status_pages = status_pages
        self._max_host_series = max_host_series

    def collect(self) -> Iterable[Metric]:
        yield from self._pipeline()
        yield from self._hosts()
        if self._status_pages is not None:
            yield from self._pages(self._status_pages)

    def _pipeline(self) -> Iterable[Metric]:
        yield CounterMetricFamily(
            "starling_deliveries",
            "Posts delivered to chat since this process started.",
            value=self.dispatcher.delivered,
        )
        yield CounterMetricFamily(
            "starling_posts_admitted",
            "Posts admitted to the outbox since this process started.",
            value=self.relay.admitted,
        )
        yield CounterMetricFamily(
            "starling_polls",
            "Scheduled polls since this process started.",
            value=self.scheduler.polls,
        )
        yield CounterMetricFamily(
            "starling_poll_failures",
            "Scheduled polls that failed upstream.",
            value=self.scheduler.failures,
        )
        yield GaugeMetricFamily(
            "starling_outbox_queued",
            "Outbox rows queued in memory for delivery right now.",
            value=self.dispatcher.queued(),
        )
        if self._metrics.outbox_rows is not None:
            yield GaugeMetricFamily(
                "starling_outbox_rows",
                "Rows in the stored outbox (read at most every 30 s).",
                value=self._metrics.outbox_rows,
            )
        resources: dict[str, int] = defaultdict(int)
        subscriptions: dict[str, int] = defaultdict(int)
        for state in self.scheduler.states.values():
            network = state.target.network
            resources[network] += 1
            subscriptions[network] += len(state.followers)
        yield _by_network("starling_resources", "Followed resources, by network.", resources)
        yield _by_network(
            "starling_subscriptions", "Active subscriptions, by network.", subscriptions
        )
        restarts = CounterMetricFamily(
            "starling_task_restarts", "Restarts of supervised tasks that died.", labels=["task"]
        )
        for task, count in sorted(self.supervisor.restarts.items()):
            restarts.add_metric([task], count)
        yield restarts

    def _hosts(self) -> Iterable[Metric]:
        known: dict[str, int] = defaultdict(int)
        for network, _host in self.health.hosts:
            known[network] += 1
        unwell = sorted(
            (t for t in self.outages.trackers.values() if t.state is not HostState.UP),
            key=lambda t: (_SEVERITY[t.state], t.network, t.host),
        )
        counts = GaugeMetricFamily(
            "starling_hosts", "Hosts by network and state.", labels=["network", "state"]
        )
        by_state: dict[tuple[str, str], int] = defaultdict(int)
        for tracker in unwell:
            by_state[(tracker.network, tracker.state.value)] += 1
        for network in sorted(set(known) | {t.network for t in unwell}):
            not_up = sum(n for (net, _), n in by_state.items() if net == network)
            counts.add_metric([network, HostState.UP.value], max(0, known[network] - not_up))
            for state in (HostState.DEGRADED, HostState.DOWN, HostState.RECOVERING):
                counts.add_metric([network, state.value], by_state[(network, state.value)])
        yield counts
        up = GaugeMetricFamily(
            "starling_host_up",
            "0 while a host is down, 1 while it is degraded or recovering; only hosts not up "
            "are listed (at most a bounded number, worst first).",
            labels=["network", "host"],
        )
        for tracker in unwell[: self._max_host_series]:
            up.add_metric(
                [tracker.network, tracker.host], 0 if tracker.state is HostState.DOWN else 1
            )
        yield up
        open_outages: dict[str, int] = defaultdict(int)
        for network, _host in self.outages.open:
            open_outages[network] += 1
        yield _by_network("starling_outages_open", "Open outages, by network.", open_outages)

    def _pages(self, pages: StatusPages) -> Iterable[Metric]:
        indicator = GaugeMetricFamily(
            "starling_status_page_indicator",
            "What the official status page says: 0 none, 1 maintenance, 2 minor, 3 major, "
            "4 critical.",
            labels=["network"],
        )
        incidents = GaugeMetricFamily(
            "starling_status_page_incidents",
            "Unresolved incidents on the official status page.",
            labels=["network"],
        )
        reachable = GaugeMetricFamily(
            "starling_status_page_up",
            "1 when the official status page was read at the last poll.",
            labels=["network"],
        )
        for network in pages.networks:
            report = pages.latest(network)
            reachable.add_metric([network], 0 if pages.failure(network) else 1)
            if report is not None:
                indicator.add_metric([network], INDICATORS.index(report.indicator))
                incidents.add_metric([network], len(report.incidents))
        yield indicator
        yield incidents
        yield reachable


def _by_network(name: str, help_text: str, values: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=["network"])
    for network, value in sorted(values.items()):
        family.add_metric([network], value)
    return family
