"""Slack multi-workspace OAuth, end to end against the local Slack.

Two workspaces install Starling through `/slack/install` (state checked, the code
traded at `oauth.v2.access`), each runs a slash command answered with its own bot
token, relayed posts reach each workspace's channel with that workspace's token,
and uninstalling forgets the token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from bot.app import App
from bot.config import ConfigError, load_settings
from bot.errors import ChatError
from bot.model import ChannelRef
from bot.store.sqlite import SqliteStore
from plugins.slack import SlackOAuthChat, SlackSettings
from plugins.slack.config import load_settings as load_slack_settings
from tests.fakes.slack_server import FakeSlack
from tests.feedserver import FeedServer

ALPHA, BETA = "T0ALPHA", "T0BETA"


@pytest_asyncio.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as server:
        server.add_workspace(ALPHA, "Alpha Co")
        server.add_workspace(BETA, "Beta Ltd")
        yield server


class OAuthBot:
    def __init__(self, app: App, task: asyncio.Task[None]) -> None:
        self.app = app
        self.task = task

    @property
    def chat(self) -> SlackOAuthChat:
        chat = self.app.chats["slack"]
        assert isinstance(chat, SlackOAuthChat)
        return chat

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.chat.http_port}{path}"


@pytest_asyncio.fixture
async def oauth_bot(
    tmp_path: Path, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[OAuthBot]:
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(
        data_dir=tmp_path / "data",
        chats=["slack"],
        allow_private_addresses=True,
        min_interval_s=0.1,
        jitter=0.0,
        health_flush_s=0.5,
        shutdown_grace_s=2.0,
        slack={
            "mode": "http",
            "http_host": "127.0.0.1",
            "http_port": 0,
            "signing_secret": slack.signing_secret,
            "api_url": slack.api_url,
            "client_id": slack.oauth.client_id,
            "client_secret": slack.oauth.client_secret,
            "min_interval_s": 0.05,
        },
    )
    app = await App.create(settings)
    bot = OAuthBot(app, asyncio.create_task(app.run()))
    await asyncio.wait_for(bot.chat.connected.wait(), 10)
    # The operator registers this as the app's Redirect URL in Slack.
    slack.oauth.redirect_url = bot.url("/slack/oauth_redirect")
    try:
        yield bot
    finally:
        app.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(bot.task, 30)


def _calls(slack: FakeSlack, method: str, channel: str) -> set[str]:
    """The workspaces whose tokens made `method` calls in `channel`."""
    return {team for m, team, ch in slack.oauth.token_calls if m == method and ch == channel}


async def test_two_workspaces_install_and_each_is_served_with_its_own_token(
    slack: FakeSlack, oauth_bot: OAuthBot, feed_server: FeedServer
) -> None:
    alpha_news = slack.add_workspace_channel(ALPHA, "news")
    beta_news = slack.add_workspace_channel(BETA, "news")
    endpoint = oauth_bot.url("/slack/events")

    for team in (ALPHA, BETA):
        status, page = await slack.install_in_browser(oauth_bot.url("/slack/install"), team)
        assert status == 200, page
        assert "Thank you" in page
    (asked, _) = slack.oauth.authorize_requests
    assert set(asked["scope"].split(",")) == {
        "chat:write",
        "commands",
        "channels:history",
        "groups:history",
        "usergroups:read",
    }
    assert asked["state"], "the install link carries a state to check on the way back"
    assert set(slack.oauth.tokens.values()) == {ALPHA, BETA}

    feed = feed_server.add_feed("updates")
    feed.add_item(title="Old")
    url = feed_server.feed_url("updates")
    for team, channel in ((ALPHA, alpha_news), (BETA, beta_news)):
        status, _, response_id = await slack.http_command_in(
            endpoint, f"follow feeds {url} --every 0.3s", channel=channel, team_id=team
        )
        assert status == 200
        answer = await slack.wait_response(response_id)
        assert "as #" in answer["text"], answer
        # The membership check after /follow ran with this workspace's token.
        await slack.wait_until(
            lambda: _calls(slack, "conversations.history", channel.id) == {team}  # noqa: B023
        )

    feed.add_item(title="Fresh news for everyone")
    await slack.wait_until(
        lambda: len(alpha_news.bot_messages()) == 1 and len(beta_news.bot_messages()) == 1
    )
    for team, channel in ((ALPHA, alpha_news), (BETA, beta_news)):
        assert "Fresh news for everyone" in channel.bot_messages()[0]["text"]
        assert _calls(slack, "chat.postMessage", channel.id) == {team}
    assert slack.count("chat.postMessage") == 2, "no send failed over to the wrong token"

    stored = await _stored_teams(oauth_bot)
    assert stored == {ALPHA, BETA}

    # Beta uninstalls: Slack revokes its token and tells Starling.
    slack.uninstall(BETA)
    assert await slack.send_event(endpoint, BETA, {"type": "app_uninstalled"}) == 200
    await _until(lambda: _stored_teams(oauth_bot), {ALPHA})

    feed.add_item(title="Second round")
    await slack.wait_until(lambda: len(alpha_news.bot_messages()) == 2)
    await asyncio.sleep(0.5)
    assert len(beta_news.bot_messages()) == 1, "nothing is sent to an uninstalled workspace"
    status, _, response_id = await slack.http_command_in(
        endpoint, "list", channel=beta_news, team_id=BETA
    )
    assert status == 200
    answer = await slack.wait_response(response_id)
    assert "not installed in this Slack workspace" in answer["text"]


async def test_a_tampered_state_installs_nothing(slack: FakeSlack, oauth_bot: OAuthBot) -> None:
    start = oauth_bot.url("/slack/install")
    async with aiohttp.ClientSession() as browser:
        async with browser.get(start, allow_redirects=False) as first:
            assert first.status == 302
            consent = first.headers["Location"]
        slack.oauth.installing = ALPHA
        async with browser.get(consent, allow_redirects=False) as back:
            redirect = back.headers["Location"]
        forged = redirect.split("&state=")[0] + "&state=forged"
        async with browser.get(forged, allow_redirects=False) as done:
            assert done.status == 400
    assert slack.oauth.tokens == {}, "the code was never traded for a token"
    assert await _stored_teams(oauth_bot) == set()


async def test_tokens_revoked_forgets_the_bot(slack: FakeSlack, oauth_bot: OAuthBot) -> None:
    status, _ = await slack.install_in_browser(oauth_bot.url("/slack/install"), ALPHA)
    assert status == 200
    workspace = slack.oauth.workspaces[ALPHA]
    chat = oauth_bot.chat
    channel = chat.channel_ref(ALPHA, "C0NEWS")
    token = await chat.token_for(channel)  # a send looks it up, and it is cached
    assert token == await chat.token_for(channel)
    event = {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": [workspace.bot_user_id]}}
    assert await slack.send_event(oauth_bot.url("/slack/events"), ALPHA, event) == 200
    await _until(lambda: _stored_teams(oauth_bot), set())
    # The cached token goes with the installation (right after its row, in the same handler).
    await _until(lambda: _token(chat, channel), "")
    with pytest.raises(ChatError, match="not installed"):
        await chat.token_for(channel)


def test_oauth_needs_http_mode_and_the_client_secret() -> None:
    base: dict[str, Any] = {"client_id": "1.2", "signing_secret": "s"}
    with pytest.raises(ConfigError, match="mode"):
        load_slack_settings({**base, "client_secret": "x"})
    with pytest.raises(ConfigError, match="client_secret"):
        load_slack_settings({**base, "mode": "http"})
    settings = load_slack_settings(
        {**base, "mode": "http", "client_secret": "x", "api_url": "http://127.0.0.1:9/api/"}
    )
    assert settings.oauth
    assert not settings.bot_token.get_secret_value()
    assert settings.authorize_url == "http://127.0.0.1:9/oauth/v2/authorize"
    assert SlackSettings().oauth is False  # unset: the single-token set-up


async def _stored_teams(bot: OAuthBot) -> set[str]:
    store = bot.app.store
    assert isinstance(store, SqliteStore)
    rows = await store.db.execute_fetchall("SELECT team_id FROM installations")
    return {str(row[0]) for row in rows}


async def _token(chat: SlackOAuthChat, channel: ChannelRef) -> str:
    """The bot token a send would use now; '' once the workspace is forgotten."""
    try:
        return await chat.token_for(channel)
    except ChatError:
        return ""


async def _until(read: Any, expected: object, within_s: float = 5.0) -> None:
    async with asyncio.timeout(within_s):
        while (got := await read()) != expected:
            await asyncio.sleep(0.05)
    assert got == expected
