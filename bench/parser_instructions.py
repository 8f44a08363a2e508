"""Instructions per parsed item, counted by valgrind: a parser figure a busy machine cannot move.

This machine's speed changes three- to four-fold from day to day (a neighbour outside
the VM, invisible in /proc/stat), so parse rates from different days do not compare.
Instruction counts do: `valgrind --tool=callgrind` gives the same total for the same
code and input, whatever else runs. This tool parses the feeds benchmark's two parser
corpora (`feeds_pipeline._parser_results`) with the code of one or more checkouts and
prints instructions per pass and per item, for an A/B of two commits:

    git worktree add /tmp/old <commit>
    python -m bench.parser_instructions --repo /tmp/old --repo .

A rate follows from a count only through a machine's instructions per second, so
convert with the ratio of two counts and a rate measured on a quiet day (see
bench/README.md, round 5). SHA-256 counts far too high under valgrind, which hides the
CPU's SHA extension. Not part of `python -m bench`: it needs valgrind and takes a few
minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import REPO, ServerProcess
from bench.feeds_pipeline import FIXTURE_TYPES, FIXTURES, PARSER_FIXTURES, _download, _pre_age

SYNTHETIC_DOCS = 50  # 10 items each, as the benchmark's synthetic corpus
_COLLECTED = re.compile(r"Collected : (\d+)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.parser_instructions")
    parser.add_argument("--repo", type=Path, action="append", help="checkout to measure")
    parser.add_argument("--passes", type=int, default=10, help="passes counted per corpus")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        corpus_file, repo, corpus, passes = args.child
        _parse_passes(Path(corpus_file), Path(repo), corpus, int(passes))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        corpus_file = Path(tmp) / "corpora.pickle"
        corpora = _corpora()
        corpus_file.write_bytes(pickle.dumps(corpora))
        for repo in args.repo or [REPO]:
            for name, docs in corpora.items():
                items = _items(docs)
                start = _count(corpus_file, repo, name, 0)
                total = _count(corpus_file, repo, name, args.passes)
                per_pass = (total - start) / args.passes
                print(
                    f"{repo.resolve()}  {name}: {per_pass / 1e6:.2f}M instructions per pass, "
                    f"{per_pass / items / 1e3:.0f}k per item "
                    f"({items} items, {len(docs)} documents)",
                    flush=True,
                )
    return 0


def _corpora() -> dict[str, list[tuple[str, bytes, str]]]:
    """The synthetic and real-mix corpora as `feeds_pipeline` builds them."""
    args = ["--port", "0", "--feeds", str(SYNTHETIC_DOCS), "--change", "1.0", "--items", "10"]
    with ServerProcess(args, core=None) as server:
        asyncio.run(_pre_age(server.base_url, SYNTHETIC_DOCS, 9))
        downloaded = _download(server.base_url, SYNTHETIC_DOCS)
    real = [doc for doc in downloaded if "/feeds/demo-" in doc[0]]
    for rel in PARSER_FIXTURES:
        path = FIXTURES / rel
        url = f"https://feeds.example.org/{path.name}"
        real.append((url, path.read_bytes(), FIXTURE_TYPES.get(path.suffix, "")))
    return {"synthetic": [d for d in downloaded if "/synth/" in d[0]], "real_mix": real}


def _items(docs: list[tuple[str, bytes, str]]) -> int:
    """Posts in `docs` as this checkout's parser reads them (the per-item figure of every
    `--repo` divides by it: checkouts that read a different number differ in more than
    speed)."""
    from plugins.feeds.parse import parse_feed

    return sum(len(parse_feed(b, content_type=c, url=u).posts) for u, b, c in docs)


def _count(corpus_file: Path, repo: Path, corpus: str, passes: int) -> int:
    """Instructions of a child that parses `corpus` once to warm up, then `passes` times."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "bench.parser_instructions",
        "--child",
        str(corpus_file),
        str(repo.resolve()),
        corpus,
        str(passes),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    found = _COLLECTED.search(done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from valgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def _parse_passes(corpus_file: Path, repo: Path, corpus: str, passes: int) -> None:
    # The checkout's code, not the installed copy: sys.path[0] wins over site-packages.
    sys.path.insert(0, str(repo))
    from plugins.feeds.parse import parse_feed

    if not parse_feed.__code__.co_filename.startswith(str(repo)):
        raise RuntimeError(f"parse_feed came from {parse_feed.__code__.co_filename}")
    docs = pickle.loads(corpus_file.read_bytes())[corpus]
    for _ in range(1 + passes):
        for url, body, content_type in docs:
            parse_feed(body, content_type=content_type, url=url)


if __name__ == "__main__":
    sys.exit(main())
