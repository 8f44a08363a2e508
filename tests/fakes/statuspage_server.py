"""Official status pages on a random loopback port: Statuspage v2, Slack status, Mastodon /health.

One server speaks all three, each at its real paths:

- Atlassian Statuspage: `/api/v2/summary.json`, and its parts `/api/v2/status.json`
  and `/api/v2/incidents/unresolved.json` cut from the same document, as a real
  page serves them. `summary` holds the document; `use("statuspage_degraded")`
  loads a fixture from `tests/fixtures/statuspages/`.
- Slack: `/api/v2.0.0/current` from `slack` (`use_slack("slack_active")`).
- Mastodon: `/health`, `200 OK` text by default; `health_status` changes it.

Faults: `fail(path, status)`, `garbage(path)` (a body that is not JSON), `stall(s)`
(answer late) and `missing(path)` (404, as on a page without that endpoint).
`hits` counts requests per path.
"""

from __future__ import annotations

import asyncio
import copy
import json
import socket
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "statuspages"


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))
    return loaded


class StatusPageServer:
    def __init__(self) -> None:
        self.summary: dict[str, Any] = fixture("statuspage_operational")
        self.slack: dict[str, Any] = fixture("slack_ok")
        self.health_status = 200
        self.hits: Counter[str] = Counter()
        self._failures: dict[str, int] = {}
        self._garbage: set[str] = set()
        self._missing: set[str] = set()
        self._stall_s = 0.0
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # --- scenario ---------------------------------------------------------------------

    def use(self, name: str) -> dict[str, Any]:
        """Serve a Statuspage fixture; returns the document so a test can alter it."""
        self.summary = fixture(name)
        return self.summary

    def use_slack(self, name: str) -> dict[str, Any]:
        self.slack = fixture(name)
        return self.slack

    def fail(self, path: str, status: int) -> None:
        self._failures[path] = status

    def garbage(self, path: str) -> None:
        self._garbage.add(path)

    def missing(self, path: str) -> None:
        self._missing.add(path)

    def stall(self, seconds: float) -> None:
        self._stall_s = seconds

    def heal(self) -> None:
        self._failures.clear()
        self._garbage.clear()
        self._stall_s = 0.0

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/api/v2/summary.json", self._summary)
        app.router.add_get("/api/v2/status.json", self._status)
        app.router.add_get("/api/v2/incidents/unresolved.json", self._unresolved)
        app.router.add_get("/api/v2.0.0/current", self._slack)
        app.router.add_get("/health", self._health)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> StatusPageServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- handlers ---------------------------------------------------------------------

    async def _answer(self, request: web.Request, document: Any) -> web.StreamResponse:
        path = request.path
        self.hits[path] += 1
        if self._stall_s:
            await asyncio.sleep(self._stall_s)
        if path in self._missing:
            raise web.HTTPNotFound(text="Not Found")
        status = self._failures.get(path)
        if status is not None:
            page = "<html><body>Service Unavailable</body></html>"
            return web.Response(status=status, text=page, content_type="text/html")
        if path in self._garbage:
            return web.Response(text="<html>maintenance", content_type="application/json")
        # Statuspage sends compact JSON with these headers.
        return web.Response(
            body=json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode(),
            content_type="application/json",
            charset="utf-8",
            headers={"Cache-Control": "max-age=0, private, must-revalidate"},
        )

    async def _summary(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, self.summary)

    async def _status(self, request: web.Request) -> web.StreamResponse:
        part = {"page": self.summary["page"], "status": self.summary["status"]}
        return await self._answer(request, part)

    async def _unresolved(self, request: web.Request) -> web.StreamResponse:
        part = {"page": self.summary["page"], "incidents": copy.deepcopy(self.summary["incidents"])}
        return await self._answer(request, part)

    async def _slack(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, self.slack)

    async def _health(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] += 1
        if self._stall_s:
            await asyncio.sleep(self._stall_s)
        if self.health_status != 200:
            return web.Response(status=self.health_status, text="")
        return web.Response(text="OK", content_type="text/plain", charset="utf-8")
