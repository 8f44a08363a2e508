"""Find plugins through entry points, exactly as a third-party package would register."""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

log = logging.getLogger(__name__)

NETWORK_GROUP = "starling.networks"
CHAT_GROUP = "starling.chats"


def discover(group: str) -> dict[str, EntryPoint]:
    """Entry points of `group` by name; a later duplicate name is ignored with a warning."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        if ep.name in found:
            log.warning("plugin %s registered twice in %s; keeping the first", ep.name, group)
            continue
        found[ep.name] = ep
    return found


def load_factory(ep: EntryPoint) -> Callable[..., Any]:
    factory = ep.load()
    if not callable(factory):
        raise TypeError(f"entry point {ep.name} ({ep.value}) is not a factory")
    return factory  # type: ignore[no-any-return]
