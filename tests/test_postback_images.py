"""Images on post-back, as members see them in chat: alt text, the guard, the limits."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from hypothesis import example, given
from hypothesis import strategies as st

from bot.postback import PostRequest, format_post, parse_post
from bot.protocols import Draft, DraftImage
from tests.conftest import StartBot
from tests.fakes.image_server import PNG, ImageServer, image_server
from tests.test_postback import _bot


@pytest_asyncio.fixture
async def images() -> AsyncIterator[ImageServer]:
    async with image_server() as server:
        yield server


def test_alt_follows_its_image_and_underscores_are_spaces() -> None:
    request = parse_post("--image https://a.example/1.png --alt a_red_kite --image x --to m hi")
    assert request.draft.images == (DraftImage("https://a.example/1.png", "a red kite"),
                                    DraftImage("x"))  # fmt: skip
    assert request.draft.text == "hi"


async def test_an_image_goes_to_every_network_with_its_alt_text(
    start_bot: StartBot, images: ImageServer
) -> None:
    bot, masto, sky = await _bot(start_bot)
    answer = await bot.say(f"/post --to masto,sky --image {images.url}/go --alt A_starling Look")
    assert answer == "Post #1: masto: https://masto.example/p/1; sky: https://sky.example/p/1"
    for network in (masto, sky):
        (image,) = network.posts["1"].images
        assert (image.alt, image.mime, image.data) == ("A starling", "image/png", PNG)
    assert images.paths == ["/go", "/cat.png"], "downloaded once for both networks"


async def test_preview_shows_the_images_and_their_alt_text(
    start_bot: StartBot, images: ImageServer
) -> None:
    bot, masto, _ = await _bot(start_bot)
    shown = await bot.say(
        f"/post --preview --to masto --image {images.url}/cat.png --alt one "
        f"--image {images.url}/cat.png --alt two Two"
    )
    assert shown == (
        "Preview, nothing is posted yet:\nmasto: Two [+ 2 images — alt: one; alt: two]"
    )
    assert masto.posts == {}


async def test_an_image_without_alt_text_is_refused(
    start_bot: StartBot, images: ImageServer
) -> None:
    bot, masto, _ = await _bot(start_bot)
    answer = await bot.say(f"/post --to masto --image {images.url}/cat.png Look")
    assert answer == (
        "/post: image 1 has no alt text; add --alt after each --image (use _ for spaces) "
        "so people who cannot see it know what it shows"
    )
    assert masto.posts == {}
    assert images.paths == [], "nothing was downloaded"


async def test_alt_text_can_be_made_optional(start_bot: StartBot, images: ImageServer) -> None:
    bot, masto, _ = await _bot(start_bot, postback_require_alt=False)
    assert "masto: https://masto.example/p/1" in await bot.say(
        f"/post --to masto --image {images.url}/cat.png Look"
    )
    assert masto.posts["1"].images[0].alt == ""


async def test_bad_images_get_one_line_and_nothing_is_posted(
    start_bot: StartBot, images: ImageServer
) -> None:
    bot, masto, _ = await _bot(start_bot)
    big = await bot.say(f"/post --to masto --image {images.url}/big.png --alt big Look")
    assert (
        big == f"/post: image 1 ({images.url}/big.png): is larger than 1 MB, the most a post takes"
    )
    page = await bot.say(f"/post --to masto --image {images.url}/page.html --alt p Look")
    assert page == (
        f"/post: image 1 ({images.url}/page.html): is text/html, not an image "
        "(JPEG, PNG, GIF or WebP)"
    )
    five = " ".join(f"--image {images.url}/cat.png --alt c" for _ in range(5))
    assert await bot.say(f"/post --to masto {five} Many") == (
        "/post: 5 images; a post takes at most 4"
    )
    stray = await bot.say("/post --to masto --alt lonely Look")
    assert stray == "/post: --alt describes the --image just before it; give --image first"
    assert masto.posts == {}


async def test_an_image_on_a_private_address_is_refused(
    start_bot: StartBot, images: ImageServer
) -> None:
    bot, masto, _ = await _bot(start_bot, allow_private_addresses=False)
    answer = await bot.say(f"/post --to masto --image {images.url}/cat.png --alt c Look")
    assert answer == (
        "/post: image 1: 127.0.0.1 is a private address; Starling does not fetch those"
    )
    assert images.paths == []
    assert masto.posts == {}


async def test_a_thread_carries_its_images_on_the_first_part(
    start_bot: StartBot, images: ImageServer
) -> None:
    bot, _, sky = await _bot(start_bot)
    text = "First part of it all. " * 3
    answer = await bot.say(f"/post --to sky --thread --image {images.url}/cat.png --alt c {text}")
    assert "(a thread of" in answer
    parts = [sky.posts[k] for k in sorted(sky.posts, key=int)]
    assert len(parts) > 1
    assert [len(p.images) for p in parts] == [1] + [0] * (len(parts) - 1)


async def test_an_approved_post_keeps_its_images(start_bot: StartBot, images: ImageServer) -> None:
    bot, masto, _ = await _bot(
        start_bot,
        postback_approval=["*"],
        postback_approvers=["boss"],
    )
    asked = await bot.say(f"/post --to masto --image {images.url}/cat.png --alt c Later")
    assert asked.startswith("Asked for approval: request #1")
    stored = await bot.app.store.get_postback(1)
    assert stored is not None
    assert [(i.url, i.alt) for i in stored.draft.images] == [(f"{images.url}/cat.png", "c")]
    bot.app.postback._image_cache.clear()  # as after a restart: only the post's row remains
    approved = await bot.chat.say("general", "/approve 1", user="boss")
    assert "masto: https://masto.example/p/1" in approved.text
    (image,) = masto.posts["1"].images
    assert (image.alt, image.data) == ("c", PNG)


_WORD = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


@given(
    targets=st.lists(st.from_regex(r"[a-z][a-z0-9_-]{0,9}", fullmatch=True), max_size=3),
    text=st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
    reply=st.sampled_from(["", "https://masto.example/@a/1"]),
    quote=st.sampled_from(["", "https://sky.example/p/2"]),
    warning=st.lists(_WORD, max_size=3).map(" ".join),
    alts=st.lists(st.lists(_WORD, max_size=3).map(" ".join), max_size=2),
    thread=st.booleans(),
)
@example([], "--thread is live", "", "", "", [], False)
@example([], "-- the team", "", "", "", [], False)
@example(["masto"], "--cw spoiler the ending", "", "", "", [], True)
def test_a_composer_line_reads_back_as_the_form_was_filled(
    targets: list[str],
    text: str,
    reply: str,
    quote: str,
    warning: str,
    alts: list[str],
    thread: bool,
) -> None:
    """What Slack's and Discord's composers send (`format_post`) is what `/post` reads."""
    text = text.strip()
    warning = " ".join(warning.replace("_", " ").split())
    alts = [" ".join(alt.replace("_", " ").split()) for alt in alts]
    images = tuple(DraftImage(f"https://img.example/{n}.png", alt) for n, alt in enumerate(alts))
    sent = PostRequest(targets, Draft(text, reply, quote, warning, images), thread)
    assert parse_post(format_post(sent)) == sent
