"""Where a well-formed XML document's markup lies: every byte outside its CDATA sections.

A CDATA section is text to every XML parser, feedparser and fastfeedparser alike, so
nothing inside one can be a shape the fast-path gates look for (a tag, an attribute,
a reference). Large feeds carry their bodies in CDATA (WordPress's
`content:encoded`, most RSS descriptions): 83 % of the bytes of the benchmark's
157 KB Atom document. Skipping them makes the gates cheaper and keeps HTML inside a
body (`<body>`, an XHTML namespace, `mode="xml"` in a script) from sending a feed
to feedparser. Only for a document fastfeedparser's extractor has read: it reads
only well-formed UTF-8 with every CDATA section closed and no "]]>" in text
(`tests/test_feed_native.py`), and never a "<" in an attribute value.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from typing import Final

_OPEN: Final = b"<![CDATA["
_CLOSE: Final = b"]]>"
# How a document starts when fastfeedparser reads it from its first byte (its
# `_clean_feed_bytes`: white space, a UTF-8 BOM, then the declaration or root).
_DOCUMENT_START: Final = re.compile(rb"\s*+(?:\xef\xbb\xbf)?(?i:<\?xml|<rss|<feed|<rdf)")
# What the walk over the markup stops at: a CDATA section's opener, and where
# "<![CDATA[" would be no opener: a comment or processing instruction (their text is
# skipped, not searched), or a DOCTYPE (a literal in its internal subset may hold
# one; such documents are not mapped). Only markup is walked, so sre's stops at "<"
# are the tags' and not the HTML's inside the sections.
_CONSTRUCT: Final = re.compile(rb"<(?:!\[CDATA\[|!--|\?|!DOCTYPE)")


class Markup:
    """A document's markup: `spans` (start, end) in order, outside every CDATA section.

    A span also holds comments and processing instructions: the gates read those as
    they always have. Every tag lies inside one span (a tag never holds a section).
    """

    __slots__ = ("_ends", "_joined", "_joined_starts", "body", "spans")

    def __init__(self, body: bytes, spans: list[tuple[int, int]]) -> None:
        self.body = body
        self.spans = spans
        self._ends = [end for _, end in spans]
        self._joined: bytes | None = None
        self._joined_starts: list[int] = []

    def holds(self, pos: int) -> bool:
        """Whether the byte at `pos` lies outside every CDATA section."""
        index = bisect.bisect_right(self._ends, pos)
        return index < len(self.spans) and self.spans[index][0] <= pos

    @property
    def joined(self) -> bytes:
        """The spans' bytes, a NUL between two: one search over them costs far less than
        one per span. No pattern of the gates matches a NUL but as "any byte but ..."
        (`[^<]`), so a match rarely reaches across one, and where it does it adds a
        match (the cautious side), never hides one; `starts` checks each match
        against the document."""
        if self._joined is None:
            pos = 0
            for start, end in self.spans:
                self._joined_starts.append(pos)
                pos += end - start + 1
            self._joined = b"\x00".join([self.body[start:end] for start, end in self.spans])
        return self._joined

    def starts(self, pattern: re.Pattern[bytes], end: int | None = None) -> list[int]:
        """Where `pattern` matches in the markup before `end`, as positions in the
        document (for patterns that match within a tag)."""
        found: list[int] = []
        joined = self.joined
        for match in pattern.finditer(joined):
            index = bisect.bisect_right(self._joined_starts, match.start()) - 1
            at = self.spans[index][0] + match.start() - self._joined_starts[index]
            if end is not None and at >= end:
                break
            if pattern.match(self.body, at) is not None:
                found.append(at)
        return found

    def finditer(
        self, pattern: re.Pattern[bytes], begin: int = 0, end: int | None = None
    ) -> Iterator[re.Match[bytes]]:
        """`pattern`'s matches in the document between `begin` and `end` that lie inside
        one span each (for patterns that match within a tag), span by span."""
        stop = len(self.body) if end is None else end
        for start, finish in self.spans:
            if finish <= begin:
                continue
            if start >= stop:
                return
            yield from pattern.finditer(self.body, max(start, begin), min(finish, stop))


def markup(body: bytes) -> Markup | None:
    """The markup of a document fastfeedparser's extractor has read, or None when every
    byte is (no CDATA section), or the document has a DOCTYPE or a section, comment
    or instruction that never closes, or starts with anything but its declaration or
    root (fastfeedparser drops such junk before it reads, so the extractor's word on
    well-formedness says nothing about it: an opener there would hide the markup)."""
    if not _has_opener(body) or not _DOCUMENT_START.match(body):
        return None
    spans: list[tuple[int, int]] = []
    start = 0  # where the current span starts
    found = _CONSTRUCT.search(body)
    while found is not None:
        at = found.start()
        if found.group() == _OPEN:
            close = _find_close(body, found.end())
            if close < 0:
                return None
            if at > start:
                spans.append((start, at))
            start = end = close + len(_CLOSE)
        elif found.group() == b"<!DOCTYPE":
            return None
        else:
            closer = b"-->" if found.group() == b"<!--" else b"?>"
            close = body.find(closer, found.end())
            if close < 0:
                return None
            end = close + len(closer)
        found = _CONSTRUCT.search(body, end)
    if not spans and start == 0:
        return None
    if start < len(body):
        spans.append((start, len(body)))
    return Markup(body, spans)


def _has_opener(body: bytes) -> bool:
    """`_OPEN in body`, found from the "["s (memchr; `in` walks the bytes, about 80 us
    at 157 KB without one). Past a few "["s that open nothing, `in` does the rest."""
    at = body.find(b"[")
    for _ in range(_PROBES):
        if at < 0:
            return False
        if at >= 2 and body.startswith(_OPEN, at - 2):
            return True
        at = body.find(b"[", at + 1)
    return at >= 0 and _OPEN in body


# "[" and "]" are rare in XML and HTML, so memchr finds the few candidates of an
# opener or a "]]>" faster than `find` walks the bytes for the whole needle (it keys
# on its last byte, ">" in every tag: about 0.5 ns a byte). After this many
# candidates that are not one, `find` does the rest.
_PROBES: Final = 16


def _find_close(body: bytes, pos: int) -> int:
    """`body.find(b"]]>", pos)`, found from the "]"s."""
    at = body.find(b"]", pos)
    for _ in range(_PROBES):
        if at < 0 or body.startswith(_CLOSE, at):
            return at
        at = body.find(b"]", at + 1)
    return at if at < 0 else body.find(_CLOSE, at)
