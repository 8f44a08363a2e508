"""Named points where a test can make the process die as if by `kill -9`.

Set `STARLING_CRASHPOINT=<name>` (and optionally `STARLING_CRASHPOINT_AFTER=<n>` to
die on the n-th pass). Used by the end-to-end tests to prove that a crash at any
step of the pipeline loses nothing and doubles nothing. Inert otherwise.
"""

from __future__ import annotations

import os
import signal

_TARGET = os.environ.get("STARLING_CRASHPOINT", "")
_remaining = int(os.environ.get("STARLING_CRASHPOINT_AFTER", "1") or "1")


def crashpoint(name: str) -> None:
    global _remaining
    if not _TARGET or name != _TARGET:
        return
    _remaining -= 1
    if _remaining <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
