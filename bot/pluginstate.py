"""Small key-value state for plugins, kept in Starling's one database.

A plugin sees `ctx.state`, a `PluginState` namespaced by its own name, so two
plugins cannot read or overwrite each other's keys. Values are text (plugins
store JSON). Plugin factories are synchronous and run before the store is open,
so the app hands out `StoreState` views of a `StateHub` and attaches the store
once it is open; a plugin reads and writes its state only at run time.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from bot.store.base import Store


log = logging.getLogger(__name__)


def retire_legacy_file(path: Path) -> None:
    """After its contents moved into the store: rename an old state file to `*.imported`
    (kept for a look back, and never read again)."""
    try:
        path.replace(path.with_name(path.name + ".imported"))
    except OSError as err:
        log.warning("imported %s into the database but could not rename it: %s", path, err)


class PluginState(Protocol):
    """What a plugin may keep between runs: `put` is committed when it returns."""

    async def get(self, key: str) -> str | None: ...

    async def put(self, key: str, value: str) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def prune(self, older_than_s: float) -> int:
        """Forget values last written more than `older_than_s` ago; how many."""
        ...


class MemoryState:
    """State that lasts as long as the process: the default for a bare `PluginContext`
    (tests, tools) so plugins never need to check whether state exists."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[str, float]] = {}

    async def get(self, key: str) -> str | None:
        found = self._values.get(key)
        return found[0] if found else None

    async def put(self, key: str, value: str) -> None:
        self._values[key] = (value, time.time())

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)

    async def prune(self, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s
        old = [k for k, (_, at) in self._values.items() if at < cutoff]
        for key in old:
            del self._values[key]
        return len(old)


class StateHub:
    """Hands out per-plugin views before the store exists; `attach` plugs the store in."""

    def __init__(self) -> None:
        self.store: Store | None = None

    def attach(self, store: Store) -> None:
        self.store = store

    def for_plugin(self, name: str) -> StoreState:
        return StoreState(self, name)


class StoreState:
    """One plugin's namespace in the store's `plugin_state` table."""

    def __init__(self, hub: StateHub, namespace: str) -> None:
        self._hub = hub
        self.namespace = namespace

    def _store(self) -> Store:
        if self._hub.store is None:
            raise RuntimeError("plugin state is used before the store is open")
        return self._hub.store

    async def get(self, key: str) -> str | None:
        return await self._store().plugin_state_get(self.namespace, key)

    async def put(self, key: str, value: str) -> None:
        await self._store().plugin_state_put(self.namespace, key, value)

    async def delete(self, key: str) -> None:
        await self._store().plugin_state_put(self.namespace, key, None)

    async def prune(self, older_than_s: float) -> int:
        return await self._store().plugin_state_prune(self.namespace, time.time() - older_than_s)
