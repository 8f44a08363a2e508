"""What every benchmark shares: result rows, targets, the table, and process helpers.

A benchmark returns `Result` rows. `results.json` gets exactly the five public keys
(`name`, `metric`, `value`, `unit`, `baseline`); the target and the human label are
only for the printed table.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

REPO = Path(__file__).resolve().parents[1]
_STARTED = time.monotonic()


def progress(bench: str, message: str) -> None:
    """A progress line on stderr, stamped with the seconds since the run started."""
    print(f"[{time.monotonic() - _STARTED:6.1f} s] {bench}: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class Target:
    """A goal for one figure: `value` must be at least (`>=`) or at most (`<=`) `limit`."""

    op: Literal[">=", "<="]
    limit: float
    note: str = ""

    def met(self, value: float | None) -> bool | None:
        if value is None or math.isnan(value):
            return None
        return value >= self.limit if self.op == ">=" else value <= self.limit

    def __str__(self) -> str:
        sign = "≥" if self.op == ">=" else "≤"
        return f"{sign} {fmt(self.limit)}" + (f" {self.note}" if self.note else "")


@dataclass(frozen=True, slots=True)
class Result:
    name: str  # benchmark and scenario, e.g. "feeds_pipeline/unchanged"
    metric: str  # machine name, e.g. "polls_per_s"
    value: float | None
    unit: str
    baseline: float | None = None
    target: Target | None = field(default=None, compare=False)
    label: str = field(default="", compare=False)  # shown in the table instead of `metric`

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "metric": self.metric,
            "value": _clean(self.value),
            "unit": self.unit,
            "baseline": _clean(self.baseline),
        }


def _clean(value: float | None) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return round(value, 6)


def fmt(value: float | None) -> str:
    """A figure for people: thousands separators, about three significant digits."""
    if value is None or math.isnan(value):
        return "—"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude == 0:
        return "0"
    return f"{value:.3g}"


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (NaN when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def table(results: Sequence[Result]) -> str:
    """A plain-text table: one row per figure, grouped by benchmark and scenario."""
    header = ("scenario", "metric", "unit", "Starling", "baseline", "target", "result")
    rows: list[tuple[str, ...]] = []
    previous = ""
    for r in results:
        verdict = r.target.met(r.value) if r.target else None
        rows.append(
            (
                r.name if r.name != previous else "",
                r.label or r.metric,
                r.unit,
                fmt(r.value),
                fmt(r.baseline),
                str(r.target) if r.target else "",
                {True: "pass", False: "FAIL", None: ""}[verdict],
            )
        )
        previous = r.name
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    numeric = {3, 4}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    for row in rows:
        if row[0] and len(out) > 2:
            out.append("")
        out.append(line(row))
    return "\n".join(out)


def write_json(results: Sequence[Result], path: Path) -> None:
    path.write_text(json.dumps([r.to_json() for r in results], indent=2) + "\n", encoding="utf-8")


# --- processes ---------------------------------------------------------------------


def cpu_plan() -> tuple[int | None, int | None]:
    """(server core, Starling core): two different cores when there are two, else no pinning."""
    try:
        cores = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None, None
    if len(cores) < 2:
        return None, None
    return cores[0], cores[1]


def pinned(core: int | None) -> Any:
    """A `preexec_fn` that pins the child (and the threads it starts later) to `core`."""
    if core is None:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, {core})

    return pin


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) another process has used, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def machine_busy_s() -> float | None:
    """CPU seconds all cores of the machine have spent busy since boot, from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except (OSError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def rss_bytes() -> int:
    """This process's resident set size now (Linux /proc; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class ServerProcess:
    """`python -m tests.feedserver` in its own process, pinned to its own core."""

    def __init__(self, args: Sequence[str], *, core: int | None, start_timeout_s: float = 30.0):
        self.args = list(args)
        self.core = core
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> ServerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.feedserver", *self.args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=pinned(self.core),
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if ready:
                self.base_url = self.proc.stdout.readline().strip()
                break
            if self.proc.poll() is not None:
                break
        if not self.base_url.startswith("http://127."):
            self.stop()
            raise RuntimeError(f"feed server did not start (printed {self.base_url!r})")
        return self

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_worker(
    module: str, args: Sequence[str], *, core: int | None, timeout_s: float, out: Path
) -> dict[str, Any]:
    """Run `python -m module args... --out FILE` pinned to `core`; return the JSON it wrote."""
    with contextlib.suppress(FileNotFoundError):
        out.unlink()
    cmd = [sys.executable, "-m", module, *args, "--out", str(out)]
    try:
        done = subprocess.run(
            cmd,
            cwd=REPO,
            timeout=timeout_s,
            preexec_fn=pinned(core),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{module} {args[0]} took longer than {timeout_s:.0f} s") from None
    if done.returncode != 0 or not out.is_file():
        raise RuntimeError(f"{module} {args[0]} failed (exit {done.returncode})")
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return data
