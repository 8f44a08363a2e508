"""Tokens for more than the default instance (`[mastodon] tokens`), against two fakes.

The second fake behaves like GoToSocial's default: every API read but
`/api/v1/instance` answers 401 without a token. With a token for it, following,
polling and streaming work there; without one, chat gets one line naming the option.
A token is only ever sent to the server it was given for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.config import ConfigError
from bot.testing import RecordingChat
from tests.conftest import RunningBot, StartBot
from tests.fakes.mastodon_server import MastodonFake, plugin_env

GTS_TOKEN = "gts-token-for-starling"


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[MastodonFake]:
    async with MastodonFake() as server:
        yield server


@pytest_asyncio.fixture
async def gts() -> AsyncIterator[MastodonFake]:
    async with MastodonFake(domain="gts.example", token=GTS_TOKEN, require_token=True) as server:
        yield server


async def _bot(
    start_bot: StartBot,
    monkeypatch: pytest.MonkeyPatch,
    fake: MastodonFake,
    gts: MastodonFake,
    **options: object,
) -> RunningBot:
    instances = {fake.domain: fake.base_url, gts.domain: gts.base_url}
    for name, value in plugin_env(fake, instances=instances, **options).items():
        monkeypatch.setenv(name, value)
    return await start_bot(RecordingChat())


def _bearers(server: MastodonFake) -> set[str]:
    return {r.headers.get("Authorization", "") for r in server.requests if r.path != "/"}


async def test_a_server_that_refuses_anonymous_reads_names_the_option_to_set(
    start_bot: StartBot, monkeypatch: pytest.MonkeyPatch, fake: MastodonFake, gts: MastodonFake
) -> None:
    bot = await _bot(start_bot, monkeypatch, fake, gts)
    answer = await bot.say("/follow mastodon @mastodonpy_test@gts.example")
    assert answer == (
        "/follow: gts.example does not let Starling read without an access token "
        '(401 Unauthorized); give Starling a token for it with [mastodon] tokens = { "gts.example" '
        '= "…" } (or STARLING_MASTODON__TOKENS=gts.example=…)'
    )
    assert "No subscriptions" in await bot.say("/list")
    assert f"Bearer {fake.token}" not in _bearers(gts), "the default token stays at home"


async def test_the_default_instance_refusing_anonymous_reads_names_token(
    start_bot: StartBot, monkeypatch: pytest.MonkeyPatch, gts: MastodonFake
) -> None:
    for name, value in plugin_env(gts, token=False).items():
        monkeypatch.setenv(name, value)
    bot = await start_bot(RecordingChat())
    answer = await bot.say("/follow mastodon @mastodonpy_test")
    assert answer.startswith("/follow: gts.example does not let Starling read without an access")
    assert answer.endswith("with [mastodon] token (or STARLING_MASTODON__TOKEN)")


@pytest.mark.parametrize("form", ["pairs", "json"])
async def test_a_token_per_server_follows_polls_and_streams_there(
    start_bot: StartBot,
    monkeypatch: pytest.MonkeyPatch,
    fake: MastodonFake,
    gts: MastodonFake,
    form: str,
) -> None:
    tokens: object = f"gts.example={GTS_TOKEN}" if form == "pairs" else {"GTS.example": GTS_TOKEN}
    bot = await _bot(start_bot, monkeypatch, fake, gts, tokens=tokens)
    follow = "/follow mastodon @mastodonpy_test@gts.example --every 1h"
    assert "Following @mastodonpy_test@gts.example on mastodon as #1" in await bot.say(follow)
    assert "as #2" in await bot.say("/follow mastodon #python@gts.example --every 1h")
    await gts.wait_subscribed("hashtag", "python")
    await gts.wait_subscribed("public:local")

    gts.post("mastodonpy_test", "Hello from a server that wants a token")
    gts.post("mastodonpy_test_2", "Live from #python on gts")
    await bot.chat.wait_for(2, within_s=5)
    await bot.poll_all()  # REST with the token too; nothing is shown twice

    assert [s.message.text for s in bot.chat.in_channel("general")] == [
        "Hello from a server that wants a token",
        "Live from #python on gts",
    ]
    assert _bearers(gts) == {f"Bearer {GTS_TOKEN}"}, "each server gets only its own token"
    assert f"Bearer {GTS_TOKEN}" not in _bearers(fake)
    assert "live: gts.example streaming from 127.0.0.1" in await bot.say("/status")


def test_a_malformed_tokens_option_is_a_config_error() -> None:
    from bot.config import parse_plugin_config
    from plugins.mastodon.config import MastodonSettings

    with pytest.raises(ConfigError, match="tokens"):
        parse_plugin_config(MastodonSettings, {"tokens": "gts.example"}, "mastodon")
    with pytest.raises(ConfigError, match="tokens"):
        parse_plugin_config(MastodonSettings, {"tokens": "not a host=tok"}, "mastodon")
    settings = parse_plugin_config(
        MastodonSettings,
        {"token": "home", "tokens": "mastodon.social=other, gts.example=t2, blank.example="},
        "mastodon",
    )
    assert settings.token_map() == {"mastodon.social": "home", "gts.example": "t2"}
    assert "t2" not in repr(settings)
