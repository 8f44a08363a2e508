"""Subscription filters: which posts a channel wants."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from bot.errors import UserError
from bot.model import Filters, Post

_REGEX_LIMIT = 200


def check_regex(pattern: str) -> re.Pattern[str]:
    """Compile a member's regex, or say in one line why it is not usable."""
    if len(pattern) > _REGEX_LIMIT:
        raise UserError(f"the regex is longer than {_REGEX_LIMIT} characters; shorten it")
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as err:
        raise UserError(f"bad regex {pattern!r}: {err}; check the pattern") from None


@dataclass(frozen=True, slots=True)
class CompiledFilters:
    filters: Filters
    regex: re.Pattern[str] | None
    include: tuple[str, ...]
    exclude: tuple[str, ...]

    @classmethod
    def of(cls, filters: Filters) -> CompiledFilters:
        """Equal filters share one compiled instance (most subscriptions have none)."""
        return _compiled(filters)

    def accepts(self, post: Post) -> bool:
        f = self.filters
        if f.skip_replies and post.is_reply:
            return False
        if f.skip_reposts and post.is_repost:
            return False
        if not (self.include or self.exclude or self.regex):
            return True
        haystack = f"{post.title}\n{post.text}"
        folded = haystack.casefold()
        if self.include and not any(word in folded for word in self.include):
            return False
        if any(word in folded for word in self.exclude):
            return False
        if self.regex is None:
            return True
        # Searched separately so `^` anchors at the start of the text as well as the title.
        return bool(self.regex.search(post.title) or self.regex.search(post.text))


@functools.lru_cache(maxsize=1024)
def _compiled(filters: Filters) -> CompiledFilters:
    return CompiledFilters(
        filters,
        check_regex(filters.regex) if filters.regex else None,
        tuple(w.casefold() for w in filters.include),
        tuple(w.casefold() for w in filters.exclude),
    )
