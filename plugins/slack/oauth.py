"""Multi-workspace OAuth: each workspace installs Starling, its bot token lives in Starling's DB.

Bolt runs the OAuth flow (`/slack/install`, then `/slack/oauth_redirect` with a
checked `state`, then `oauth.v2.access`); this module gives it an installation
store backed by Starling's own database, so installs survive restarts and need no
second file. Sends look up the bot token of the channel's workspace (channels are
stored as `team/channel`) and make every Web API call of that send with it.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from bot.errors import ChatError
from bot.model import ChannelRef, RichMessage
from bot.store.base import Store
from plugins.slack.api import act_for_this_request, acting_as
from plugins.slack.chat import SlackChat
from plugins.slack.config import INSTALL_PATH

log = logging.getLogger(__name__)

STATE_TTL_S = 600


def _keys(enterprise_id: str | None, team_id: str | None, org_wide: bool | None) -> tuple[str, str]:
    """The store's key: an org-wide (Enterprise Grid) install has no team."""
    return enterprise_id or "", "" if org_wide else team_id or ""


class StarlingInstallationStore(AsyncInstallationStore):
    """Bolt's installation store over `Store.save/find/delete_installation`.

    Bot tokens found for sends are kept in memory (every send needs one); any save
    or delete empties that cache, so a new install or an uninstall counts at once.
    """

    def __init__(self, platform: str) -> None:
        self.platform = platform
        self._store: Store | None = None
        self._tokens: dict[str, str] = {}
        self._generation = 0  # bumped by every save or delete

    def _changed(self) -> None:
        """An installation was saved or deleted: no cached token may outlive that."""
        self._tokens.clear()
        self._generation += 1

    def attach(self, store: Store) -> None:
        self._store = store

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the Slack installation store is not attached to Starling's store")
        return self._store

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_save(self, installation: Installation) -> None:
        enterprise, team = _keys(
            installation.enterprise_id, installation.team_id, installation.is_enterprise_install
        )
        # A bot-only app: the installer's user token (none is asked for) is not kept.
        data = {k: v for k, v in vars(installation).items() if k not in ("user_token",)}
        await self.store.save_installation(self.platform, enterprise, team, data)
        self._changed()
        log.info(
            "Slack: installed in workspace %s (%s) by %s",
            installation.team_name or installation.enterprise_name,
            team or enterprise,
            installation.user_id,
        )

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        enterprise, team = _keys(enterprise_id, team_id, is_enterprise_install)
        data = await self.store.find_installation(self.platform, enterprise, team)
        if data is None:
            return None
        installation = Installation(**data)  # type: ignore[arg-type]
        if user_id is not None and installation.user_id != user_id:
            return None  # only the bot installation is kept, not each member's
        return installation

    async def async_find_bot(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
    ) -> Bot | None:
        installation = await self.async_find_installation(
            enterprise_id=enterprise_id,
            team_id=team_id,
            is_enterprise_install=is_enterprise_install,
        )
        return (
            installation.to_bot() if installation is not None and installation.bot_token else None
        )

    async def team_token(self, team_id: str) -> str:
        """The bot token of a workspace, whatever its enterprise; '' when not installed."""
        cached = self._tokens.get(team_id)
        if cached:
            return cached
        generation = self._generation
        data = await self.store.find_installation(self.platform, None, team_id)
        token = data.get("bot_token") if data is not None else None
        if not isinstance(token, str):
            return ""
        if token and generation == self._generation:  # no save or delete meanwhile
            self._tokens[team_id] = token
        return token

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self._forget(enterprise_id, team_id)

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        if user_id is None:  # a member's revoked user token leaves the bot installed
            await self._forget(enterprise_id, team_id)

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self._forget(enterprise_id, team_id)

    async def _forget(self, enterprise_id: str | None, team_id: str | None) -> None:
        try:
            if await self.store.delete_installation(
                self.platform, enterprise_id or "", team_id or ""
            ):
                log.info("Slack: uninstalled from workspace %s", team_id or enterprise_id)
            elif team_id:  # an org-wide install is keyed without its team
                await self.store.delete_installation(self.platform, enterprise_id or "", "")
        finally:
            self._changed()


class MemoryStateStore(AsyncOAuthStateStore):
    """One-use `state` values for ten minutes. In memory: a restart mid-install means
    clicking install again, which is cheaper than another table."""

    def __init__(self, ttl_s: float = STATE_TTL_S) -> None:
        self._ttl_s = ttl_s
        self._issued: dict[str, float] = {}

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        now = time.monotonic()
        self._issued = {s: t for s, t in self._issued.items() if t > now}
        state = secrets.token_urlsafe(24)
        self._issued[state] = now + self._ttl_s
        return state

    async def async_consume(self, state: str) -> bool:
        expires = self._issued.pop(state, None)
        return expires is not None and expires > time.monotonic()


class SlackOAuthChat(SlackChat):
    """A Slack chat serving every workspace that installed it, each with its own token."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.installations = StarlingInstallationStore(self.name)
        self.states = MemoryStateStore()

    def attach_store(self, store: Store) -> None:
        """Called by the app once the database is open."""
        self.installations.attach(store)

    def oauth_settings(self) -> AsyncOAuthSettings:
        settings = self.settings
        return AsyncOAuthSettings(
            client_id=settings.client_id,
            client_secret=settings.client_secret.get_secret_value(),
            scopes=settings.scopes,
            user_scopes=[],
            redirect_uri=settings.redirect_url or None,
            install_path=INSTALL_PATH,
            install_page_rendering_enabled=False,  # straight to Slack's consent page
            redirect_uri_path=settings.redirect_path,
            authorization_url=settings.authorize_url,
            installation_store=self.installations,
            installation_store_bot_only=True,
            state_store=self.states,
            state_expiration_seconds=STATE_TTL_S,
            logger=log,
        )

    def serve_workspaces(self, app: AsyncApp) -> None:
        """Every request runs with its workspace's token; uninstalling forgets it.

        Channel refs need no help here: commands, clicks and the composer all pass
        the team Bolt authorized the request for (`receive._who`)."""

        async def per_workspace(
            context: AsyncBoltContext, next: Callable[[], Awaitable[None]]
        ) -> None:
            # Bolt runs middleware one after another, then the listeners, in this
            # request's own task: the token set here stays with this request only.
            act_for_this_request(context.bot_token)
            await next()

        app.use(per_workspace)
        # app_uninstalled deletes the installation; tokens_revoked deletes the bot's.
        app.enable_token_revocation_listeners()

    async def token_for(self, channel: ChannelRef) -> str:
        team, _, _ = channel.native_id.rpartition("/")
        token = await self.installations.team_token(team) if team else ""
        if not token:
            raise ChatError(
                f"Starling is not installed in Slack workspace {team or '?'} any more; "
                f"install it again through {INSTALL_PATH}",
                permanent=True,
            )
        return token

    async def send(self, channel: ChannelRef, message: RichMessage, key: str) -> str:
        with acting_as(await self.token_for(channel)):
            return await super().send(channel, message, key)

    async def edit(self, channel: ChannelRef, message_ref: str, message: RichMessage) -> None:
        with acting_as(await self.token_for(channel)):
            await super().edit(channel, message_ref, message)

    async def delete(self, channel: ChannelRef, message_ref: str) -> None:
        with acting_as(await self.token_for(channel)):
            await super().delete(channel, message_ref)

    async def find_sent(self, channel: ChannelRef, key: str) -> str | None:
        try:
            token = await self.token_for(channel)
        except ChatError:
            return None  # nothing can be looked up; the send itself says why it fails
        with acting_as(token):
            return await super().find_sent(channel, key)
