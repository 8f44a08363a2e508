"""Rich text for outgoing posts: links, mentions and hashtags as facets.

Bluesky stores post text as plain UTF-8 and marks links, mentions and tags with
*facets* that point at UTF-8 **byte** ranges, not character indexes, so any
non-ASCII text before a link shifts every offset. The post limit is 300
graphemes (what a reader sees as characters; one emoji family is one) and 3000
bytes, checked here before anything is sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import regex  # type: ignore[import-untyped]

from bot.errors import UserError
from plugins.bluesky.ids import is_handle

MAX_GRAPHEMES = 300
MAX_BYTES = 3000
MAX_TAG_GRAPHEMES = 64

_URL = regex.compile(r"(?<![\w@/])https?://[^\s<>\"]+", regex.IGNORECASE)
_MENTION = regex.compile(r"(?<![\w@.])@([a-zA-Z0-9][a-zA-Z0-9.-]*[a-zA-Z0-9])")
_INVISIBLE = "\u00ad\u2060\u200a\u200b\u200c\u200d\u20e2"
_TAG = regex.compile(
    rf"(?<![^\s])[#＃]((?!\ufe0f)[^\s{_INVISIBLE}]*[^\d\s\p{{P}}{_INVISIBLE}]+[^\s{_INVISIBLE}]*)"
)
_TRAILING = ".,;:!?'\"”’)]}"


@dataclass(frozen=True, slots=True)
class Span:
    start: int  # character index into the text
    end: int
    feature: dict[str, str]


def grapheme_count(text: str) -> int:
    return len(regex.findall(r"\X", text))


def length_problems(text: str) -> list[str]:
    """What Bluesky would refuse about the text's length, in words for chat."""
    problems = []
    graphemes = grapheme_count(text)
    if graphemes > MAX_GRAPHEMES:
        problems.append(f"that post is {graphemes} characters; Bluesky allows {MAX_GRAPHEMES}")
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        problems.append(f"that post is {size} bytes; Bluesky allows {MAX_BYTES}")
    if not text.strip():
        problems.append("that post is empty; write some text")
    return problems


def check_length(text: str) -> None:
    """Raise `UserError` if Bluesky would refuse the text as too long (or empty)."""
    problems = length_problems(text)
    if problems:
        raise UserError(
            "; ".join(problems) + (". Shorten it and try again" if text.strip() else "")
        )


def _trim_url(url: str) -> str:
    while url and url[-1] in _TRAILING:
        if url[-1] == ")" and url.count("(") >= url.count(")"):
            break
        url = url[:-1]
    return url


def find_spans(text: str) -> tuple[list[Span], list[tuple[int, int, str]]]:
    """Links and tags as spans; mentions as (start, end, handle) still to resolve."""
    spans: list[Span] = []
    taken: list[tuple[int, int]] = []
    for match in _URL.finditer(text):
        url = _trim_url(match.group(0))
        if len(url) > len("https://"):
            end = match.start() + len(url)
            spans.append(
                Span(match.start(), end, {"$type": "app.bsky.richtext.facet#link", "uri": url})
            )
            taken.append((match.start(), end))

    def free(start: int, end: int) -> bool:
        return all(end <= a or start >= b for a, b in taken)

    mentions = []
    for match in _MENTION.finditer(text):
        handle = match.group(1).rstrip(".-").lower()
        end = match.start() + 1 + len(handle)
        if is_handle(handle) and free(match.start(), end):
            mentions.append((match.start(), end, handle))
    for match in _TAG.finditer(text):
        tag = match.group(1)
        while tag and tag[-1] in _TRAILING:
            tag = tag[:-1]
        end = match.start(1) + len(tag)
        if tag and grapheme_count(tag) <= MAX_TAG_GRAPHEMES and free(match.start(), end):
            spans.append(
                Span(match.start(), end, {"$type": "app.bsky.richtext.facet#tag", "tag": tag})
            )
    return spans, mentions


def to_facets(text: str, spans: list[Span]) -> list[dict[str, Any]]:
    """Facets with UTF-8 byte offsets, in text order."""
    facets = []
    for span in sorted(spans, key=lambda s: s.start):
        start = len(text[: span.start].encode("utf-8"))
        end = start + len(text[span.start : span.end].encode("utf-8"))
        facets.append({"index": {"byteStart": start, "byteEnd": end}, "features": [span.feature]})
    return facets


async def build_facets(
    text: str, resolve_handle: Callable[[str], Awaitable[str | None]]
) -> list[dict[str, Any]]:
    """Every facet for `text`; a mention whose handle does not resolve stays plain text."""
    spans, mentions = find_spans(text)
    for start, end, handle in mentions:
        did = await resolve_handle(handle)
        if did:
            spans.append(Span(start, end, {"$type": "app.bsky.richtext.facet#mention", "did": did}))
    return to_facets(text, spans)
