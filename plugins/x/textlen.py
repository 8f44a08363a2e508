"""How long X thinks a post is: twitter-text's weighted length (configuration v3).

The rules, from X's `twitter-text` config v3: text is NFC-normalised; a code point
in U+0000–U+10FF, U+2000–U+200D, U+2010–U+201F or U+2032–U+2037 weighs 1, any
other (CJK, most symbols) weighs 2; every emoji, including a whole ZWJ, skin-tone,
keycap, flag or tag sequence, weighs 2; every URL weighs 23 whatever its length.
The limit is 280.

URL detection is simpler than twitter-text's: anything starting with `http://` or
`https://`, and bare domains ending in a common generic TLD (`example.com/path`).
Bare domains under other TLDs are counted character by character.
"""

from __future__ import annotations

import re
import unicodedata

MAX_WEIGHTED_LENGTH = 280
URL_WEIGHT = 23
_LIGHT_RANGES = ((0x0000, 0x10FF), (0x2000, 0x200D), (0x2010, 0x201F), (0x2032, 0x2037))

_COMMON_TLDS = (
    "com|org|net|edu|gov|mil|int|info|biz|io|co|dev|app|ai|me|tv|xyz|blog|news|tech|online|"
    "site|social|page|cloud|shop|store|link"
)
_URL = re.compile(
    r"https?://[^\s<>\"]+"
    rf"|(?<![\w@.-])(?:[a-z0-9](?:[a-z0-9-]{{0,61}}[a-z0-9])?\.)+(?:{_COMMON_TLDS})\b(?:/[^\s<>\"]*)?",
    re.IGNORECASE,
)
# Trailing punctuation is the sentence's, not the URL's (as twitter-text decides).
_URL_TRAILING = ".,;:!?'\")]}"

_ZWJ = 0x200D
_VS16 = 0xFE0F
_KEYCAP = 0x20E3


def _is_emoji_base(cp: int) -> bool:
    return (
        0x1F000 <= cp <= 0x1FAFF  # pictographs, emoticons, transport, flags, supplemental
        or 0x2600 <= cp <= 0x27BF  # miscellaneous symbols and dingbats
        or 0x2B00 <= cp <= 0x2BFF  # arrows and stars such as ⭐
        or 0x2300 <= cp <= 0x23FF  # ⌚ ⏰ and friends
        or cp in (0x00A9, 0x00AE, 0x203C, 0x2049, 0x2122, 0x2139, 0x3030, 0x303D)
    )


def _is_modifier(cp: int) -> bool:
    """Code points that extend the emoji before them into one sequence."""
    return cp in (_VS16, _KEYCAP) or 0x1F3FB <= cp <= 0x1F3FF or 0xE0020 <= cp <= 0xE007F


def _char_weight(cp: int) -> int:
    return 1 if any(lo <= cp <= hi for lo, hi in _LIGHT_RANGES) else 2


def _emoji_run(cps: list[int], i: int) -> int:
    """Length (in code points) of the emoji sequence starting at `i`, or 0 if none."""
    cp = cps[i]
    n = len(cps)
    if cp < 0x80:
        if chr(cp) not in "0123456789#*":
            return 0
        # Keycaps: a digit, # or * followed by (VS16 and) U+20E3.
        j = i + 1
        if j < n and cps[j] == _VS16:
            j += 1
        return j + 1 - i if j < n and cps[j] == _KEYCAP else 0
    if not _is_emoji_base(cp):
        return 0
    j = i + 1
    if 0x1F1E6 <= cp <= 0x1F1FF and j < n and 0x1F1E6 <= cps[j] <= 0x1F1FF:
        return 2  # a flag is a pair of regional indicators
    while j < n:
        if _is_modifier(cps[j]):
            j += 1
        elif cps[j] == _ZWJ and j + 1 < n and _is_emoji_base(cps[j + 1]):
            j += 2
        else:
            break
    return j - i


def _text_weight(text: str) -> int:
    cps = [ord(ch) for ch in text]
    total = 0
    i = 0
    while i < len(cps):
        run = _emoji_run(cps, i)
        if run:
            total += 2
            i += run
        else:
            total += _char_weight(cps[i])
            i += 1
    return total


def weighted_length(text: str) -> int:
    """The length X counts against its 280 limit."""
    text = unicodedata.normalize("NFC", text)
    total = 0
    last = 0
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(_URL_TRAILING)
        end = match.start() + len(url)
        total += _text_weight(text[last : match.start()]) + URL_WEIGHT
        last = end
    return total + _text_weight(text[last:])


def fits(text: str) -> bool:
    return 0 < weighted_length(text) <= MAX_WEIGHTED_LENGTH
