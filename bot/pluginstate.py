"""Small key-value state for plugins, kept in Starling's one database.

A plugin sees `ctx.state`, a `PluginState` namespaced by its own name, so two
plugins cannot read or overwrite each other's keys. Values are text (plugins
store JSON). Plugin factories are synchronous and run before the store is open,
so the app hands out `StoreState` views of a `StateHub` and attaches the store
once it is open; a plugin reads and writes its state only at run time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from bot.store.base import Store


log = logging.getLogger(__name__)

T = TypeVar("T")


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


class KeyedJournal(Generic[T]):
    """Values by idempotency key in a plugin's state, kept for `keep_s`.

    The publishers' crash-safety record: `put` is committed when it returns, so what
    a post-back is about to send is on disk before it leaves. Entries are
    `<prefix><key>`; `encode`/`decode` turn a value into text and back (`decode` may
    raise ValueError, KeyError, TypeError or AttributeError for an unreadable entry,
    which then counts as absent). Before the store held plugin state, journals were
    files: `read_legacy` yields that file's (key, value, written at) entries, which
    are imported once, on first use, before the file is renamed `*.imported`.
    """

    def __init__(
        self,
        state: PluginState,
        *,
        prefix: str,
        keep_s: float,
        encode: Callable[[T], str],
        decode: Callable[[str], T],
        legacy: Path | None = None,
        read_legacy: Callable[[Path], Iterable[tuple[str, T, float]]] | None = None,
        label: str = "journal",
    ) -> None:
        self._state = state
        self._prefix = prefix
        self._keep_s = keep_s
        self._encode = encode
        self._decode = decode
        self._legacy = legacy if read_legacy is not None else None
        self._read_legacy = read_legacy
        self._label = label
        self._ready = False
        self._lock = asyncio.Lock()

    async def get(self, key: str) -> T | None:
        await self._import_legacy()
        text = await self._state.get(self._prefix + key)
        if text is None:
            return None
        try:
            return self._decode(text)
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("%s: the entry for %r is unreadable; treating it as new", self._label, key)
            return None

    async def put(self, key: str, value: T) -> None:
        """Commit `value` (before it is sent anywhere); forget entries past `keep_s`."""
        await self._import_legacy()
        await self._state.put(self._prefix + key, self._encode(value))
        await self._state.prune(self._keep_s)

    async def _import_legacy(self) -> None:
        if self._ready:
            return
        async with self._lock:
            legacy, read = self._legacy, self._read_legacy
            if self._ready or legacy is None or read is None or not legacy.is_file():
                self._ready = True
                return
            cutoff = time.time() - self._keep_s
            try:
                entries = list(read(legacy))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
                log.warning("%s: could not read the old file %s: %s", self._label, legacy, err)
                entries = []
            for key, value, at in entries:
                if at >= cutoff and await self._state.get(self._prefix + key) is None:
                    await self._state.put(self._prefix + key, self._encode(value))
            retire_legacy_file(legacy)
            self._ready = True
