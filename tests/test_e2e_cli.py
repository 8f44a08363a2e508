"""End to end through the real CLI in a subprocess, with the console chat.

Follow a feed; new items appear once; a restart repeats nothing; `kill -9` at any
step of the pipeline, then a restart: nothing lost, nothing doubled.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.feedserver import Feed, FeedServer

pytestmark = pytest.mark.slow


class Console:
    """A Starling process driven through its console chat, as a person would."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.output = ""

    @classmethod
    async def start(cls, data_dir: Path, **env: str) -> Console:
        environment = {
            **os.environ,
            "STARLING_ALLOW_PRIVATE_ADDRESSES": "true",
            "STARLING_MIN_INTERVAL_S": "0.1",
            "STARLING_JITTER": "0",
            "STARLING_LOG_LEVEL": "WARNING",
            **env,
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", "--data-dir", str(data_dir),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=REPO, env=environment,
        )  # fmt: skip
        console = cls(proc)
        await console.expect("Type /help")
        return console

    async def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def expect(self, text: str, timeout: float = 15.0) -> str:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            while text not in self.output:
                chunk = await self.proc.stdout.read(4096)
                if not chunk:
                    raise AssertionError(f"process ended before {text!r}; got:\n{self.output}")
                self.output += chunk.decode()
        return self.output

    async def finish(self) -> int:
        """Close stdin (end of input) and collect the rest of the output."""
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        rest, _ = await asyncio.wait_for(self.proc.communicate(), 30)
        self.output += rest.decode()
        return self.proc.returncode or 0

    async def died(self) -> int:
        assert self.proc.stdout is not None
        rest, _ = await asyncio.wait_for(self.proc.communicate(), 30)
        self.output += rest.decode()
        assert self.proc.returncode is not None
        return self.proc.returncode


def times_shown(outputs: list[str], title: str) -> int:
    return sum(out.count(f"\n{title}\n") for out in outputs)


async def _follow(console: Console, server: FeedServer) -> None:
    await console.type(f"/follow feeds {server.feed_url('news')} --every 0.3s")
    await console.expect("as #1")


@pytest.fixture
def news(feed_server: FeedServer) -> Feed:
    feed = feed_server.add_feed("news")
    for n in range(3):
        feed.add_item(title=f"Old item {n}")
    return feed


async def test_follow_relay_restart_nothing_repeated(
    tmp_path: Path, feed_server: FeedServer, news: Feed
) -> None:
    first = await Console.start(tmp_path)
    await _follow(first, feed_server)
    news.add_item(title="Item one")
    await first.expect("\nItem one\n")
    news.add_item(title="Item two")
    await first.expect("\nItem two\n")
    await first.type("/list")
    await first.expect("#1 feeds follow")
    assert await first.finish() == 0

    second = await Console.start(tmp_path)
    news.add_item(title="Item three")
    await second.expect("\nItem three\n")
    assert await second.finish() == 0

    outputs = [first.output, second.output]
    for title in ("Item one", "Item two", "Item three"):
        assert times_shown(outputs, title) == 1, title
    assert times_shown(outputs, "Old item 0") == 0


@pytest.mark.parametrize("crashpoint", ["after_admit", "after_send", "after_record"])
async def test_kill_9_at_any_step_loses_nothing_and_doubles_nothing(
    tmp_path: Path, feed_server: FeedServer, news: Feed, crashpoint: str
) -> None:
    setup = await Console.start(tmp_path)
    await _follow(setup, feed_server)
    assert await setup.finish() == 0

    doomed = await Console.start(tmp_path, STARLING_CRASHPOINT=crashpoint)
    news.add_item(title="Crash item")
    assert await doomed.died() == -signal.SIGKILL

    survivor = await Console.start(tmp_path)
    news.add_item(title="After the crash")
    await survivor.expect("\nAfter the crash\n")
    assert await survivor.finish() == 0

    outputs = [doomed.output, survivor.output]
    assert times_shown(outputs, "Crash item") == 1, "\n---\n".join(outputs)
    assert times_shown(outputs, "After the crash") == 1


async def test_sigterm_flushes_and_exits_cleanly(
    tmp_path: Path, feed_server: FeedServer, news: Feed
) -> None:
    console = await Console.start(tmp_path, STARLING_LOG_LEVEL="INFO")
    await _follow(console, feed_server)
    console.proc.send_signal(signal.SIGTERM)
    assert await console.died() == 0
    assert console.proc.stderr is not None


async def test_bad_input_gets_one_line_and_stores_nothing(
    tmp_path: Path, feed_server: FeedServer, news: Feed
) -> None:
    console = await Console.start(tmp_path, STARLING_ALLOW_PRIVATE_ADDRESSES="false")
    await console.type(f"/follow feeds {feed_server.feed_url('news')}")
    await console.type("/follow mastodonx @someone@example.social")
    await console.type("/unfollow 42")
    await console.type("/list")
    await console.expect("No subscriptions")
    assert await console.finish() == 0
    replies = [line for line in console.output.splitlines() if line.startswith("» ")]
    assert "private address" in replies[0]
    assert replies[0].startswith("» /follow:")
    assert replies[1].startswith("» /follow: unknown network 'mastodonx'")
    assert replies[2].startswith("» /unfollow: there is no subscription #42")
    assert "Traceback" not in console.output


async def test_kill_9_while_sending_a_digest_doubles_nothing(
    tmp_path: Path, feed_server: FeedServer, news: Feed
) -> None:
    setup = await Console.start(tmp_path)
    await _follow(setup, feed_server)
    assert await setup.finish() == 0

    doomed = await Console.start(
        tmp_path, STARLING_CRASHPOINT="after_send", STARLING_DIGEST_THRESHOLD="3"
    )
    for n in range(4):
        news.add_item(title=f"Burst item {n}")
    assert await doomed.died() == -signal.SIGKILL
    assert "4 new posts" in doomed.output

    survivor = await Console.start(tmp_path, STARLING_DIGEST_THRESHOLD="3")
    news.add_item(title="Calm again")
    await survivor.expect("\nCalm again\n")
    assert await survivor.finish() == 0
    everything = doomed.output + survivor.output
    for n in range(4):
        assert everything.count(f"Burst item {n}") == 1, everything
