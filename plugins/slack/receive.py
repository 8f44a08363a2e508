"""Receiving `/starling …`: a Bolt `AsyncApp` over Socket Mode or signed HTTP.

The slash command is acknowledged at once (Slack gives up after 3 s), then the
work runs and the answer goes back through the command's `response_url`:
ephemeral for the member who typed it, in channel when the core says so.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import WSMessage, web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.web.async_client import AsyncWebClient

from bot.errors import Outcome
from bot.protocols import CommandService, Invocation
from plugins.slack import actions, compose
from plugins.slack.api import SlackFailure
from plugins.slack.format import OPEN_ACTION, command_text, reply_text

if TYPE_CHECKING:
    from plugins.slack.chat import Identity, SlackChat
    from plugins.slack.oauth import SlackOAuthChat

log = logging.getLogger(__name__)
bolt_log = logging.getLogger("plugins.slack.bolt")

MAX_BODY = 1 << 20
SUBSCRIBING = frozenset({"follow", "search"})


async def receive(chat: SlackChat, commands: CommandService, stop: asyncio.Event) -> None:
    """Run until `stop` is set; return early (and say why) if Slack refuses the credentials."""
    if chat.settings.oauth:  # every workspace that installed it; the identity is per request
        from plugins.slack.chat import Identity

        anyone = Identity(team_id="", team="", user_id="", user="", bot_id="")
        await _serve_http(chat, build_bolt_app(chat, commands, anyone), stop)
        return
    try:
        identity = await chat.fetch_identity()
    except SlackFailure as failure:
        if failure.permanent:
            log.error("Slack refused the bot token (%s); the Slack chat is off", failure)
            return
        raise RuntimeError(f"Slack is not answering: {failure}") from None
    log.info(
        "Slack: connected to workspace %s (%s) as @%s",
        identity.team,
        identity.team_id,
        identity.user,
    )
    bolt = build_bolt_app(chat, commands, identity)
    if chat.settings.mode == "http":
        await _serve_http(chat, bolt, stop)
    else:
        await _socket_mode(chat, bolt, stop)


def build_bolt_app(chat: SlackChat, commands: CommandService, identity: Identity) -> AsyncApp:
    settings = chat.settings
    http = settings.mode == "http"
    token = settings.bot_token.get_secret_value()
    # Tokenless: Bolt gets the token from `authorize`, which also turns away other workspaces.
    client = AsyncWebClient(
        base_url=settings.api_url, session=chat.api.session(), timeout=int(settings.timeout_s)
    )

    async def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult | None:
        if team_id and team_id != identity.team_id:
            log.warning("ignored a request from another Slack workspace (%s)", team_id)
            return None
        return AuthorizeResult(
            enterprise_id=identity.enterprise_id or enterprise_id,
            team_id=identity.team_id,
            bot_user_id=identity.user_id,
            bot_id=identity.bot_id,
            bot_token=token,
        )

    # Bolt accepts None from `authorize`: "not authorized".
    auth: dict[str, Any] = {"authorize": authorize}
    workspaces = _oauth_chat(chat)
    if workspaces is not None:
        auth = {"oauth_settings": workspaces.oauth_settings()}
    app = AsyncApp(
        client=client,
        **auth,
        signing_secret=settings.signing_secret.get_secret_value() if http else "",
        request_verification_enabled=http,
        ssl_check_enabled=http,
        url_verification_enabled=http,
        logger=bolt_log,
        user_facing_authorize_error_message=(
            "Starling is not installed in this Slack workspace; nothing was changed."
            if settings.oauth
            else "This Starling is installed in another Slack workspace; nothing was changed."
        ),
    )
    if workspaces is not None:
        workspaces.serve_workspaces(app)  # per-request token and team; uninstall events

    async def on_command(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()
        await _run_command(chat, commands, _who(identity, context), body)

    async def on_open_button(ack: AsyncAck) -> None:
        await ack()  # a link button opens its URL in the browser; nothing to do here

    app.command(settings.command)(on_command)
    app.action(OPEN_ACTION)(on_open_button)
    actions.register(app, chat, commands, lambda context: _who(identity, context))
    compose.register(app, chat, commands, lambda context: _who(identity, context))
    return app


def _oauth_chat(chat: SlackChat) -> SlackOAuthChat | None:
    from plugins.slack.oauth import SlackOAuthChat  # it builds on SlackChat, which imports us

    return chat if isinstance(chat, SlackOAuthChat) else None


def _who(identity: Identity, context: AsyncBoltContext) -> Identity:
    """The single workspace's identity, or (OAuth) the one Bolt authorized this request for."""
    if identity.team_id:
        return identity
    from plugins.slack.chat import Identity

    result = context.authorize_result
    return Identity(
        team_id=context.team_id or "",
        team=str(result.team or "") if result else "",
        user_id=context.bot_user_id or "",
        user=str(result.user or "") if result else "",
        bot_id=context.bot_id or "",
        enterprise_id=context.enterprise_id,
    )


async def _run_command(
    chat: SlackChat, commands: CommandService, identity: Identity, body: dict[str, Any]
) -> None:
    channel_id = str(body.get("channel_id") or "")
    user = str(body.get("user_id") or "")
    typed = command_text(str(body.get("text") or "")).strip()
    name, _, args = typed.partition(" ")
    name = name.lower().lstrip("/") or "help"
    channel = chat.channel_ref(identity.team_id, channel_id, str(body.get("channel_name") or ""))
    prefix = chat.settings.command
    if name == "post" and not args.strip() and await compose.open_composer(chat, body, channel_id):
        return  # `/starling post` alone opens the composer
    try:
        roles = await chat.user_groups.of(user)
        reply = await commands.handle(Invocation(channel, user, name, args.strip(), roles))
    except Exception:
        log.exception("%s %s failed", prefix, name)
        oops = reply_text(f"{prefix} {name}: something went wrong; it is logged", prefix, [])
        await actions.answer(chat, body, oops, True)
        return
    text = reply.text
    # The core names the command it ran, Slack-style is longer. reply_text renames only
    # known commands; this also covers an unknown one ("/frobnicate: unknown command").
    if text.startswith(f"/{name}"):
        text = f"{prefix} {name}{text[len(name) + 1 :]}"
    shown = reply_text(text, prefix, commands.command_names())
    # Buttons under the answer when it has any (Delete after /post).
    await actions.answer(chat, body, shown, reply.ephemeral, reply.actions)
    if name in SUBSCRIBING and reply.changed and not await chat.is_member(channel_id):
        note = (
            f"Note: Starling is not a member of this channel yet, so it cannot post here. "
            f"Type /invite @{identity.user} first."
        )
        await actions.answer(chat, body, reply_text(note, prefix, []), True)


async def _socket_mode(chat: SlackChat, bolt: AsyncApp, stop: asyncio.Event) -> None:
    app_token = chat.settings.app_token.get_secret_value()
    try:
        opened = await chat.api.call("apps.connections.open", json={}, token=app_token)
    except SlackFailure as failure:
        if failure.permanent or failure.error == "invalid_auth":
            log.error("Slack refused the app token (%s); check [slack] app_token", failure.error)
            return
        raise RuntimeError(f"Slack Socket Mode is not available: {failure}") from None
    wss_url = str(opened.get("url") or "")
    handler = AsyncSocketModeHandler(bolt, app_token, logger=bolt_log, web_client=bolt.client)
    handler.client.wss_uri = wss_url  # already issued above, through the health-recorded call
    host = urlsplit(wss_url).hostname or "wss-primary.slack.com"

    async def dropped(message: WSMessage) -> None:
        chat.api.record_stream(host, Outcome.STREAM_DROPPED, str(message.data or ""))

    handler.client.on_close_listeners.append(dropped)
    try:
        await handler.connect_async()  # type: ignore[no-untyped-call]
        chat.api.record_stream(host, Outcome.OK, "connected")
        chat.connected.set()
        await stop.wait()
    finally:
        chat.connected.clear()
        await handler.close_async()  # type: ignore[no-untyped-call]


async def _serve_http(chat: SlackChat, bolt: AsyncApp, stop: asyncio.Event) -> None:
    settings = chat.settings

    async def endpoint(request: web.Request) -> web.Response:
        response = await bolt.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(response)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post(settings.http_path, endpoint)
    flow = bolt.oauth_flow
    if flow is not None:  # multi-workspace: the browser's install flow, state checked by Bolt

        async def install(request: web.Request) -> web.Response:
            return await to_aiohttp_response(
                await flow.handle_installation(await to_bolt_request(request))
            )

        async def redirect(request: web.Request) -> web.Response:
            return await to_aiohttp_response(
                await flow.handle_callback(await to_bolt_request(request))
            )

        app.router.add_get(flow.install_path, install)
        app.router.add_get(flow.redirect_uri_path, redirect)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        await site.start()
        chat.http_port = int(runner.addresses[0][1])
        log.info("Slack: listening for requests on port %d%s", chat.http_port, settings.http_path)
        chat.connected.set()
        await stop.wait()
    finally:
        chat.connected.clear()
        await runner.cleanup()
