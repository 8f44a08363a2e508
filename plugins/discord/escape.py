"""Make untrusted text inert for Discord, and cut it to Discord's limits safely.

The core already breaks mentions with a word joiner; Discord gets its own pass
because its syntax is wider (`</cmd:id>`, `<t:…>`, `<id:…>`, custom emoji, masked
links, spoilers, headings) and because what Discord would *render* matters, not
only what would ping. `AllowedMentions.none()` stops pings; this stops pills,
masked links and formatting that could break out of the embed's layout.

Two flavours:

* `markdown_safe` for fields Discord renders as markdown (embed title, description,
  field values, message content): every markdown character outside URLs gets a
  backslash. Discord consumes a backslash before any punctuation, so the text
  reads exactly as it came, only inert. URLs stay untouched so they still link.
* `plain_safe` for fields shown verbatim (embed author, footer, thread and webhook
  names), where a backslash would be visible: only mention syntax is broken.

In both, a zero-width space goes after every `<` and between `@` and
`everyone`/`here`, so no mention, channel link, command link, timestamp or custom
emoji can form, whatever the surrounding characters.
"""

from __future__ import annotations

import re

ZWSP = "\u200b"
ELLIPSIS = "…"

# What Discord's autolinker would turn into a link; kept as is so links still work.
# It stops at characters that could start markdown or mention syntax.
_URL = re.compile(r"https?://[^\s<>\[\]`\"|\\]+", re.IGNORECASE)
# Every character that means something in Discord markdown. `<` is not escaped (a
# link could swallow the backslash); the zero-width space after it is what counts.
_MARKDOWN = re.compile(r"([\\*_~`|\[\]()>#\-+])")
_NUMBERED = re.compile(r"^(\s*\d+)\.", re.MULTILINE)
_BROADCAST = re.compile(r"@(?=everyone|here)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]")


def _break_mentions(text: str) -> str:
    text = _BROADCAST.sub("@" + ZWSP, text)
    return text.replace("<", "<" + ZWSP)


def plain_safe(text: str) -> str:
    """Neutralise mentions in text Discord shows verbatim (author, footer, names)."""
    return _break_mentions(_CONTROL.sub("", text))


def markdown_safe(text: str) -> str:
    """Escape Discord markdown and break mentions, leaving URLs clickable."""
    text = _CONTROL.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    out: list[str] = []
    pos = 0
    for match in _URL.finditer(text):
        out.append(_escape_prose(text[pos : match.start()]))
        out.append(_BROADCAST.sub("@" + ZWSP, match.group(0)))
        pos = match.end()
    out.append(_escape_prose(text[pos:]))
    return "".join(out)


def _escape_prose(text: str) -> str:
    text = _MARKDOWN.sub(r"\\\1", text)
    text = _NUMBERED.sub(r"\1\\.", text)
    return _break_mentions(text)


def utf16_len(text: str) -> int:
    """Discord counts limits in UTF-16 code units, as JavaScript strings do."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def fit(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` UTF-16 units, ending in "…" when cut.

    Never leaves a dangling escape backslash, which would swallow the ellipsis
    or, worse, whatever Starling appends after the cut.
    """
    if utf16_len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    budget = limit - 1
    cut: list[str] = []
    used = 0
    for ch in text:
        cost = 2 if ord(ch) > 0xFFFF else 1
        if used + cost > budget:
            break
        cut.append(ch)
        used += cost
    head = "".join(cut).rstrip()
    trailing = len(head) - len(head.rstrip("\\"))
    if trailing % 2:
        head = head[:-1]
    return head + ELLIPSIS


def one_line(text: str) -> str:
    """Collapse whitespace, for names and titles that must stay on one line."""
    return " ".join(text.split())
