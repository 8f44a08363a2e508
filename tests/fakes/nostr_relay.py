"""A REAL nostr relay for the tests: PyPI `nostr-relay` in a subprocess on a loopback port.

Nothing here imitates the protocol: the relay is the published implementation
(falcon + uvicorn + SQLite), started with a config file written for the test
(random free port, a temporary database, quiet logging) and probed over HTTP
(NIP-11) until it serves. `verify_signatures=False` drops the relay's own
signature validator so a test can plant a forged event and check that Starling,
not the relay, refuses it.

`Author` is another person's client: it signs with `aionostr` (the library
`nostr-relay` itself is built on), an implementation independent of Starling's.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aionostr.event import Event as AioEvent
from aionostr.key import PrivateKey as AioPrivateKey
from websockets.sync.client import connect

START_TIMEOUT_S = 40.0
# The relay's own CLI (`nostr-relay -c CONFIG serve`), run by this interpreter.
_LAUNCH = "import sys; from nostr_relay.cli import main; main(sys.argv[1:])"

_CONFIG = """\
DEBUG: false
relay_name: starling test relay
storage:
  sqlalchemy.url: sqlite+aiosqlite:///{db}
  num_concurrent_reqs: 4
  num_concurrent_adds: 1
  validators:
{validators}
gunicorn:
  bind: 127.0.0.1:{port}
  workers: 1
  loglevel: warning
  reload: false
message_timeout: 600
subscription_limit: 32
max_limit: {max_limit}
oldest_event: 31536000
logging:
  version: 1
  formatters:
    simple:
      format: "%(asctime)s %(name)s %(levelname)s %(message)s"
  handlers:
    console:
      class: logging.StreamHandler
      formatter: simple
      stream: ext://sys.stdout
  loggers:
    nostr_relay:
      level: WARNING
      handlers: [console]
      propagate: false
  root:
    level: WARNING
    handlers: [console]
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NostrRelay:
    """One relay process; `stop()`/`kill()` and `start()` again keep its port and database."""

    def __init__(
        self,
        workdir: Path,
        *,
        verify_signatures: bool = True,
        port: int = 0,
        db: Path | None = None,
        max_limit: int = 1000,
    ) -> None:
        self.workdir = workdir
        self.max_limit = max_limit  # the relay answers no more than this per REQ
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db = db or workdir / "relay.sqlite3"
        self.verify_signatures = verify_signatures
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        path = self.workdir / "relay.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _write_config(self) -> Path:
        validators = ["nostr_relay.validators.is_not_too_large"]
        if self.verify_signatures:
            validators.append("nostr_relay.validators.is_signed")
        config = self.workdir / "relay.yaml"
        config.write_text(
            _CONFIG.format(
                db=self.db,
                port=self.port,
                max_limit=self.max_limit,
                validators="\n".join(f"    - {v}" for v in validators),
            )
        )
        return config

    def start(self) -> NostrRelay:
        return self.launch().wait_ready()

    def launch(self) -> NostrRelay:
        """Start the process without waiting (start several, then `wait_ready` each)."""
        config = self._write_config()
        log = (self.workdir / "relay.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, "-c", str(config), "serve", "--use-uvicorn"],
            cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        return self

    def wait_ready(self) -> NostrRelay:
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nostr-relay exited with {self.proc.returncode}:\n{self.log}")
            if self._answers():
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"nostr-relay did not start within {START_TIMEOUT_S} s:\n{self.log}")

    def _answers(self) -> bool:
        """NIP-11: the relay information document, served once the app is up."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/", headers={"Accept": "application/nostr+json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=1) as response:
                return bool(json.loads(response.read()).get("supported_nips"))
        except (OSError, ValueError):
            return False

    def stop(self) -> None:
        """Graceful stop (SIGTERM), as an operator restarting the relay would do."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the relay dies mid-connection, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    # --- talking to it as another client would -------------------------------------

    def send(self, event: dict[str, Any]) -> tuple[bool, str]:
        """Publish one event; return the relay's OK verdict."""
        with connect(self.url, open_timeout=10, proxy=None) as ws:
            ws.send(json.dumps(["EVENT", event]))
            while True:
                reply = json.loads(ws.recv(timeout=10))
                if reply[0] == "OK":
                    return bool(reply[2]), str(reply[3])

    def query(self, **nostr_filter: Any) -> list[dict[str, Any]]:
        """REQ until EOSE: what the relay holds for a filter (`tag_t=[..]` means `#t`)."""
        wire = {(f"#{k[4:]}" if k.startswith("tag_") else k): v for k, v in nostr_filter.items()}
        events: list[dict[str, Any]] = []
        with connect(self.url, open_timeout=10, proxy=None) as ws:
            ws.send(json.dumps(["REQ", "q", wire]))
            while True:
                reply = json.loads(ws.recv(timeout=10))
                if reply[0] == "EOSE":
                    return events
                if reply[0] == "EVENT":
                    events.append(reply[2])


class Author:
    """Someone else on nostr, with their own key and client library."""

    def __init__(self) -> None:
        self.key = AioPrivateKey()
        self.pubkey = self.key.public_key.hex()
        self.npub = self.key.public_key.bech32()

    def event(
        self,
        content: str,
        *,
        kind: int = 1,
        tags: list[list[str]] | None = None,
        created_at: int | None = None,
    ) -> dict[str, Any]:
        event = AioEvent(
            pubkey=self.pubkey,
            content=content,
            kind=kind,
            tags=tags or [],
            created_at=created_at or int(time.time()),
        )
        self.key.sign_event(event)
        return dict(event.to_json_object())


@contextlib.contextmanager
def running_relays(*relays: NostrRelay) -> Iterator[tuple[NostrRelay, ...]]:
    """Start relays side by side (each takes a second or two), stop them all afterwards."""
    try:
        for relay in relays:
            relay.launch()
        for relay in relays:
            relay.wait_ready()
        yield relays
    finally:
        for relay in relays:
            relay.stop()


@pytest.fixture(scope="session")
def relay_trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NostrRelay, ...]]:
    """Two honest relays and one that stores events without checking signatures.

    Shared by a test module's tests (each test uses fresh keys and hashtags).
    """
    with running_relays(
        NostrRelay(tmp_path_factory.mktemp("relay-a")),
        NostrRelay(tmp_path_factory.mktemp("relay-b")),
        NostrRelay(tmp_path_factory.mktemp("relay-lax"), verify_signatures=False),
    ) as relays:
        yield relays
