"""Splitting a long post into a thread, only when the member asks (`/post --thread`).

Each network judges its own length (X's weighted count, Bluesky's graphemes, the
Mastodon instance's limit), so the splitter knows no limit itself: it asks the
network's `fits` check. Parts break between words where possible, never inside a
grapheme, and end with a " (2/3)" counter so readers see where they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import regex  # type: ignore[import-untyped]

from bot.errors import UserError

MAX_PARTS = 25
_WORDS = re.compile(r"\S+\s*")
_GRAPHEMES = regex.compile(r"\X")


def counter(index: int, total: int) -> str:
    return f" ({index}/{total})"


def split_thread(text: str, fits: Callable[[str], bool], max_parts: int = MAX_PARTS) -> list[str]:
    """The parts of `text`, each of which `fits` (counter included); one part, as typed,
    when the whole text fits. Raises `UserError` when even `max_parts` are not enough."""
    text = text.strip()
    if fits(text):
        return [text]
    # The counter's width depends on the total, which depends on the split: grow the
    # assumed total until the split needs no more parts than assumed.
    assumed = 2
    while assumed <= max_parts:
        # The widest counter of this total stands in for each part's own (networks may
        # strip trailing spaces, so padding with spaces would not be counted).
        parts = _greedy(text, _padded(fits, counter(assumed, assumed)), max_parts)
        if parts is None:
            break
        if len(parts) <= assumed:
            total = len(parts)
            return [part + counter(n, total) for n, part in enumerate(parts, 1)]
        assumed = len(parts)
    raise UserError(f"the text needs more than {max_parts} posts even as a thread; shorten it")


def _padded(fits: Callable[[str], bool], pad: str) -> Callable[[str], bool]:
    return lambda chunk: fits(chunk + pad)


def _greedy(text: str, fits: Callable[[str], bool], max_parts: int) -> list[str] | None:
    """Fill each part with as many words as fit; a word longer than a whole part is cut
    between graphemes. None when it would take more than `max_parts`."""
    parts: list[str] = []
    current = ""
    for word in _WORDS.findall(text):
        candidate = current + word
        if fits(candidate.rstrip()):
            current = candidate
            continue
        if current.strip():
            parts.append(current.rstrip())
            current = ""
        if fits(word.rstrip()):
            current = word
            continue
        for piece in _cut(word.rstrip(), fits):
            if current:
                parts.append(current)
            current = piece
        current += word[len(word.rstrip()) :]
        if len(parts) > max_parts:
            return None
    if current.strip():
        parts.append(current.rstrip())
    return parts if len(parts) <= max_parts else None


def _cut(word: str, fits: Callable[[str], bool]) -> list[str]:
    """A word too long for one part, in pieces that each fit."""
    pieces: list[str] = []
    current = ""
    for grapheme in _GRAPHEMES.findall(word):
        if not fits(grapheme):
            raise UserError("the text cannot be split into posts this network takes")
        if current and not fits(current + grapheme):
            pieces.append(current)
            current = ""
        current += grapheme
    if current:
        pieces.append(current)
    return pieces
