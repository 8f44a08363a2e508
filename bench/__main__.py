"""Run every benchmark, print a table and write `bench/results.json`.

`python -m bench` runs the full set (a few minutes on 2 cores); `--quick` runs a
small smoke version (about half a minute) suitable for CI. Targets are printed as
pass/FAIL but never change the exit status; a benchmark that crashes does.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import delivery, feeds_pipeline, streams
from bench.common import Result, table, write_json

BENCHMARKS: dict[str, Callable[..., list[Result]]] = {
    "feeds_pipeline": feeds_pipeline.run,
    "streams": streams.run,
    "delivery": delivery.run,
}
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small, ~30 s smoke run")
    parser.add_argument(
        "--only", choices=sorted(BENCHMARKS), action="append", help="run only this benchmark"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results JSON path")
    args = parser.parse_args(argv)

    started = time.monotonic()
    results: list[Result] = []
    crashed: list[str] = []
    for name in args.only or list(BENCHMARKS):
        try:
            results += BENCHMARKS[name](quick=args.quick)
        except Exception:
            traceback.print_exc()
            crashed.append(name)
    elapsed = time.monotonic() - started

    mode = "quick" if args.quick else "full"
    print(f"\nStarling benchmarks ({mode} run, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC)\n")
    if results:
        print(table(results))
    write_json(results, args.output)
    print(f"\n{len(results)} figures in {elapsed:.0f} s; written to {args.output}")
    if crashed:
        print(f"benchmark(s) crashed: {', '.join(crashed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
