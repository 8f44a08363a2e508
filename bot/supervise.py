"""Long-running tasks are supervised: one that dies is logged and restarted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class Supervisor:
    """Owns every background task of the app, so none is silently lost."""

    def __init__(self, *, max_backoff_s: float = 60.0) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._max_backoff_s = max_backoff_s
        self.restarts: dict[str, int] = {}

    def supervise(
        self, name: str, factory: Callable[[], Coroutine[Any, Any, None]]
    ) -> asyncio.Task[None]:
        """Run `factory()` forever: restart it with backoff whenever it raises."""

        async def keep_running() -> None:
            backoff = min(1.0, self._max_backoff_s)
            while True:
                try:
                    await factory()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.restarts[name] = self.restarts.get(name, 0) + 1
                    log.exception("task %s died; restarting in %.0f s", name, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._max_backoff_s)

        return self.spawn(keep_running(), name=name)

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        """Start a one-off task whose failure is logged, never swallowed."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
