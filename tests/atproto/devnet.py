"""The pytest side of the local Bluesky network started by devnet.mjs.

`devnet` is a session fixture: one network (PLC, PDS and, with PostgreSQL and
Redis, the AppView) serves every `atproto` test. Tests that need it are skipped,
with the reason, when `node` or tests/atproto/node_modules is missing
(`npm ci --prefix tests/atproto` installs it).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ATPROTO_DIR = Path(__file__).resolve().parent
STARTUP_S = 120.0


def missing() -> str:
    """Why the dev network cannot start here, or "" when it can."""
    if shutil.which("node") is None:
        return "node is not installed; the Bluesky dev network needs Node 20"
    if not (ATPROTO_DIR / "node_modules" / "@atproto" / "dev-env").is_dir():
        return "tests/atproto/node_modules is missing; run: npm ci --prefix tests/atproto"
    return ""


@dataclass(frozen=True, slots=True)
class Account:
    handle: str
    did: str
    password: str
    display_name: str


@dataclass(slots=True)
class Devnet:
    mode: str
    pds: str
    plc: str
    appview: str | None
    accounts: dict[str, Account]
    firehose: list[dict[str, Any]] = field(default_factory=list)

    async def firehose_event(self, rkey: str, within_s: float = 15.0) -> dict[str, Any]:
        """The PDS's commit event for the post `rkey`, in Jetstream's shape."""
        async with asyncio.timeout(within_s):
            while True:
                for event in list(self.firehose):
                    if event["commit"]["rkey"] == rkey:
                        return event
                await asyncio.sleep(0.02)

    def require_appview(self) -> str:
        if self.appview is None:
            _skip_or_fail("the AppView did not start (PostgreSQL or Redis missing): PDS only")
        return self.appview


def _start() -> tuple[subprocess.Popen[str], Devnet]:
    env = {
        **os.environ,
        "DB_POSTGRES_URL": os.environ.get(
            "DB_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres"
        ),
        "REDIS_HOST": os.environ.get("REDIS_HOST", "127.0.0.1:6379"),
        "LOG_ENABLED": "false",
    }
    proc = subprocess.Popen(
        ["node", "devnet.mjs", os.environ.get("STARLING_DEVNET_MODE", "auto")],
        cwd=ATPROTO_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    ready: dict[str, Any] = {}
    got_ready = threading.Event()
    firehose: list[dict[str, Any]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("ready"):
                ready.update(message)
                got_ready.set()
            elif "firehose" in message:
                firehose.append(message["firehose"])
        got_ready.set()

    threading.Thread(target=read, daemon=True, name="devnet-stdout").start()
    started = time.monotonic()
    if not got_ready.wait(STARTUP_S) or not ready:
        proc.kill()
        raise RuntimeError(
            f"the Bluesky dev network did not start within {time.monotonic() - started:.0f} s; "
            "run `node tests/atproto/devnet.mjs` to see why"
        )
    accounts = {
        a["handle"].split(".")[0]: Account(a["handle"], a["did"], a["password"], a["displayName"])
        for a in ready["accounts"]
    }
    net = Devnet(ready["mode"], ready["pds"], ready["plc"], ready["appview"], accounts, firehose)
    return proc, net


def _skip_or_fail(reason: str) -> None:
    """A user without Node may skip these; CI (CI=true) must run them."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must run the Bluesky dev-network tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def devnet() -> Iterator[Devnet]:
    reason = missing()
    if reason:
        _skip_or_fail(reason)
    proc, net = _start()
    try:
        yield net
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
