"""`/post --thread`: how a long text is cut into posts each network takes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.errors import UserError
from bot.threadsplit import split_thread


def at_most(limit: int):  # type: ignore[no-untyped-def]
    return lambda text: len(text) <= limit


def test_the_counter_is_counted_even_by_a_network_that_strips_spaces() -> None:
    parts = split_thread("alpha beta gamma delta epsilon", lambda t: len(t.strip()) <= 16)
    assert parts == ["alpha beta (1/4)", "gamma (2/4)", "delta (3/4)", "epsilon (4/4)"]


def test_a_text_that_fits_stays_one_post_as_typed() -> None:
    assert split_thread("Short and sweet", at_most(30)) == ["Short and sweet"]


def test_parts_break_between_words_and_carry_a_counter() -> None:
    text = "one two three four five six seven eight nine ten eleven twelve"
    parts = split_thread(text, at_most(30))
    assert parts == [
        "one two three four five (1/3)",
        "six seven eight nine ten (2/3)",
        "eleven twelve (3/3)",
    ]


def test_a_word_longer_than_a_post_is_cut_between_characters_not_inside_an_emoji() -> None:
    family = "\N{MAN}\u200d\N{WOMAN}\u200d\N{GIRL}"
    parts = split_thread("https://example.com/" + family * 8, at_most(30))
    assert all(len(p) <= 30 for p in parts)
    assert "".join(p.rsplit(" (", 1)[0] for p in parts).count(family) == 8


def test_too_long_even_as_a_thread_is_one_clear_line() -> None:
    with pytest.raises(UserError, match="more than 25 posts"):
        split_thread("word " * 400, at_most(20))


def test_a_network_that_takes_no_text_at_all_is_refused() -> None:
    with pytest.raises(UserError, match="cannot be split"):
        split_thread("anything at all", lambda text: False)


@given(
    st.lists(st.text(alphabet="abcdefghij🙂", min_size=1, max_size=12), min_size=1, max_size=40),
    st.integers(min_value=40, max_value=80),  # 2+ words a post: under 25 posts
)
def test_every_part_fits_and_no_word_is_lost(words: list[str], limit: int) -> None:
    text = " ".join(words)
    parts = split_thread(text, at_most(limit))
    assert all(len(p) <= limit for p in parts)
    if len(parts) == 1:
        assert parts == [text]
        return
    bodies = [p.rsplit(" (", 1)[0] for p in parts]
    assert [p.rsplit(" (", 1)[1] for p in parts] == [
        f"{n}/{len(parts)})" for n in range(1, len(parts) + 1)
    ]
    assert "".join(bodies).replace(" ", "") == text.replace(" ", "")
