"""X's weighted post length (twitter-text config v3), checked against twitter-text's own cases.

The expected lengths marked "conformance" are from twitter-text's conformance
suite (`conformance/tests/validate.yml`, Apache-2.0), the reference every X client
counts with.
"""

from __future__ import annotations

import pytest

from plugins.x.textlen import fits, weighted_length

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # one ZWJ sequence
FLAG_ENGLAND = "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"


@pytest.mark.parametrize(
    ("text", "length"),
    [
        # conformance
        ("This is a test.", 15),
        ("http://test.com", 23),
        ("https://test.com", 23),
        ("test.com", 23),
        ("Test https://test.com test https://test.com test.com test", 86),
        ("\u00c1B", 2),
        ("A\u05e9\u05bc\u05c1", 4),
        (FAMILY * 140, 280),
        (
            "Unicode 10.0 emoji: \U0001f92a; \U0001f9d5; \U0001f9d5\U0001f3fe; " + FLAG_ENGLAND,
            34,
        ),
        ("Unicode 9.0 emoji: \U0001f920; \U0001f483; \U0001f483\U0001f3fe", 29),
        ("285 chars- http://www.twitter.com/jack " + "xxxxxxxxxx-" * 24, 299),
        ("故人西辞黄鹤楼，烟花三月下扬州。", 32),
        ("\u2018quotes\u2019 \u2014 dashes \u2032", 19),
        # written for Starling
        ("A\u0301", 1),  # NFC folds the combining accent into Á
        ("1\ufe0f\u20e3 keycap", 9),
        ("\U0001f1eb\U0001f1f7 flag", 7),
        ("see https://example.com/a/very/long/path?with=query.", 28),
        ("mail me at x@example.com", 24),
    ],
)
def test_weighted_length_matches_twitter_text(text: str, length: int) -> None:
    assert weighted_length(text) == length


def test_the_limit_is_280_weighted() -> None:
    assert fits("a" * 280)
    assert not fits("a" * 281)
    assert fits("故" * 140)
    assert not fits("故" * 141)
    assert not fits("")
    assert fits("https://example.com/" + "x" * 500)
