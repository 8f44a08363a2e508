"""Follow arguments and subscription filters: what a channel asked for is what it gets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import App
from bot.commands import FollowArgs, parse_follow
from bot.config import load_settings
from bot.errors import UserError
from bot.filters import CompiledFilters
from bot.model import Author, Filters, Post
from bot.protocols import Invocation
from bot.testing import RecordingChat

FEED = "https://example.com/feed.xml"


def parse(args: str, max_backlog: int = 20) -> FollowArgs:
    return parse_follow(args, max_backlog=max_backlog)


# --- parse_follow ------------------------------------------------------------------------


def test_network_and_query() -> None:
    parsed = parse(f"Feeds {FEED}")
    assert (parsed.network, parsed.query) == ("feeds", FEED)
    assert parsed.filters == Filters()
    assert (parsed.last, parsed.interval_s) == (0, None)


def test_query_of_several_words_and_quotes() -> None:
    parsed = parse('bsky "rust lang" release --no-replies')
    assert (parsed.network, parsed.query) == ("bsky", "rust lang release")
    assert parsed.filters.skip_replies


def test_include_comma_list_and_repeated() -> None:
    parsed = parse(f"feeds {FEED} --include python,rust --include ' go '")
    assert parsed.filters.include == ("python", "rust", "go")


def test_exclude_and_empty_items_are_dropped() -> None:
    parsed = parse(f"feeds {FEED} --exclude 'ads,, ,sponsored'")
    assert parsed.filters.exclude == ("ads", "sponsored")


def test_regex_is_kept() -> None:
    assert parse(f"feeds {FEED} --regex 'v\\d+\\.\\d+'").filters.regex == r"v\d+\.\d+"


def test_bad_regex_names_the_regex() -> None:
    with pytest.raises(UserError, match=r"bad regex '\(unclosed'"):
        parse(f"feeds {FEED} --regex '(unclosed'")


def test_overlong_regex_is_refused() -> None:
    with pytest.raises(UserError, match="longer than"):
        parse(f"feeds {FEED} --regex {'a' * 300}")


def test_no_replies_and_no_reposts() -> None:
    parsed = parse(f"feeds {FEED} --no-replies --no-reposts")
    assert (parsed.filters.skip_replies, parsed.filters.skip_reposts) == (True, True)
    only = parse(f"feeds {FEED} --NO-REPOSTS").filters
    assert (only.skip_replies, only.skip_reposts) == (False, True)


def test_options_can_come_anywhere() -> None:
    parsed = parse(f"--last 3 feeds --include x {FEED}")
    assert (parsed.network, parsed.query, parsed.last) == ("feeds", FEED, 3)
    assert parsed.filters.include == ("x",)


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("1", 1), ("20", 20)])
def test_last_within_bounds(value: str, expected: int) -> None:
    assert parse(f"feeds {FEED} --last {value}", max_backlog=20).last == expected


@pytest.mark.parametrize("value", ["21", "-1", "three", "1.5", ""])
def test_last_out_of_bounds(value: str) -> None:
    with pytest.raises(UserError, match="--last takes a number from 0 to 20"):
        parse(f"feeds {FEED} --last '{value}'", max_backlog=20)


def test_last_with_superscript_digit_is_a_user_error() -> None:
    with pytest.raises(UserError, match="--last"):
        parse(f"feeds {FEED} --last ²")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("10m", 600.0), ("90s", 90.0), ("90", 90.0), ("2h", 7200.0), ("1d", 86400.0), ("1.5m", 90.0)],
)
def test_every_durations(value: str, seconds: float) -> None:
    assert parse(f"feeds {FEED} --every {value}").interval_s == seconds


@pytest.mark.parametrize("value", ["soon", "10 minutes", "-5m", "10w", "m"])
def test_bad_duration(value: str) -> None:
    with pytest.raises(UserError, match="is not a duration"):
        parse(f"feeds {FEED} --every '{value}'")


def test_unknown_option() -> None:
    with pytest.raises(UserError, match="unknown option --colour"):
        parse(f"feeds {FEED} --colour blue")


def test_option_without_value() -> None:
    with pytest.raises(UserError, match="--include needs a value"):
        parse(f"feeds {FEED} --include")


def test_unbalanced_quotes() -> None:
    with pytest.raises(UserError, match="quotes"):
        parse(f"feeds '{FEED}")


@pytest.mark.parametrize("args", ["", "feeds", "feeds --include x", "   "])
def test_missing_query(args: str) -> None:
    with pytest.raises(UserError, match="name a network and what to follow"):
        parse(args)


# --- the /follow command's interval checks -----------------------------------------------


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[App]:
    built = await App.create(
        load_settings(data_dir=tmp_path / "data", min_interval_s=60.0),
        chats={"test": RecordingChat()},
    )
    yield built
    await built.aclose()


async def follow(app: App, args: str) -> str:
    chat = RecordingChat()
    reply = await app.commands.handle(
        Invocation(chat.channel("general"), "tester", "/follow", args)
    )
    return reply.text


async def test_every_below_the_minimum_is_refused(app: App) -> None:
    reply = await follow(app, f"feeds {FEED} --every 30s")
    assert reply == "/follow: --every must be at least 1 min for feeds"
    assert await app.store.list_subscriptions() == []


async def test_every_zero_is_refused(app: App) -> None:
    # 127.0.0.1 is blocked (private addresses off), so nothing is fetched either way.
    reply = await follow(app, "feeds http://127.0.0.1:9/feed.xml --every 0")
    assert "--every must be at least" in reply


async def test_unfollow_with_superscript_digit_is_a_user_error(app: App) -> None:
    chat = RecordingChat()
    reply = await app.commands.handle(
        Invocation(chat.channel("general"), "tester", "/unfollow", "²")
    )
    assert reply.text == "/unfollow: give the subscription id from /list, e.g. /unfollow 3"


# --- CompiledFilters.accepts -------------------------------------------------------------


def make_post(
    text: str = "", title: str = "", *, reply: bool = False, repost: bool = False
) -> Post:
    return Post(
        network="feeds",
        native_id="1",
        author=Author("someone"),
        text=text,
        title=title,
        is_reply=reply,
        is_repost=repost,
    )


def accepts(filters: Filters, post: Post) -> bool:
    return CompiledFilters.of(filters).accepts(post)


def test_no_filters_accept_everything() -> None:
    assert accepts(Filters(), make_post())
    assert accepts(Filters(), make_post("anything", reply=True, repost=True))


def test_include_is_case_insensitive_and_reads_title_and_text() -> None:
    f = Filters(include=("Python",))
    assert accepts(f, make_post("I like PYTHON"))
    assert accepts(f, make_post("nothing here", title="python 3.13 released"))
    assert not accepts(f, make_post("I like rust", title="Rust news"))


def test_include_any_of_several_words() -> None:
    f = Filters(include=("python", "rust"))
    assert accepts(f, make_post("rust 2024"))
    assert accepts(f, make_post("python 4"))
    assert not accepts(f, make_post("go 1.23"))


def test_include_uses_unicode_case_folding() -> None:
    assert accepts(Filters(include=("straße",)), make_post("STRASSE closed"))


def test_exclude_wins_over_include() -> None:
    f = Filters(include=("python",), exclude=("Sponsored",))
    assert accepts(f, make_post("python tips"))
    assert not accepts(f, make_post("python tips", title="SPONSORED"))
    assert not accepts(Filters(exclude=("ads",)), make_post("new ADS policy"))
    assert accepts(Filters(exclude=("ads",)), make_post("release notes"))


def test_regex_is_case_insensitive_and_searches_title_and_text() -> None:
    f = Filters(regex=r"\bv\d+\.\d+\b")
    assert accepts(f, make_post("Released V2.1 today"))
    assert accepts(f, make_post("see notes", title="v3.0"))
    assert not accepts(f, make_post("version two"))


def test_regex_must_also_match_when_include_matches() -> None:
    f = Filters(include=("release",), regex=r"\[stable\]")
    assert accepts(f, make_post("[Stable] release 5"))
    assert not accepts(f, make_post("beta release 5"))
    assert not accepts(f, make_post("[stable] build 5"))


@pytest.mark.parametrize("title", ["", "Weekly notes"])
def test_anchored_regex_matches_the_start_of_the_text(title: str) -> None:
    assert accepts(Filters(regex=r"^\[stable\]"), make_post("[Stable] release 5", title))


def test_anchored_regex_matches_the_start_of_the_title() -> None:
    f = Filters(regex=r"^\[stable\]")
    assert accepts(f, make_post("release 5", title="[stable] 5.0"))
    assert not accepts(f, make_post("release 5", title="beta [stable]"))


def test_skip_replies_and_reposts() -> None:
    assert not accepts(Filters(skip_replies=True), make_post("x", reply=True))
    assert accepts(Filters(skip_replies=True), make_post("x", repost=True))
    assert not accepts(Filters(skip_reposts=True), make_post("x", repost=True))
    assert accepts(Filters(skip_reposts=True), make_post("x", reply=True))


def test_skip_replies_applies_even_when_words_match() -> None:
    f = Filters(include=("python",), skip_replies=True)
    assert accepts(f, make_post("python"))
    assert not accepts(f, make_post("python", reply=True))


def test_parsed_options_filter_as_written() -> None:
    parsed = parse(f"feeds {FEED} --include Python --exclude job --no-reposts")
    f = parsed.filters
    assert accepts(f, make_post("New in python"))
    assert not accepts(f, make_post("python job offer"))
    assert not accepts(f, make_post("python", repost=True))
    assert not accepts(f, make_post("golang"))
