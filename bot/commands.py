"""Chat-agnostic slash commands: every chat plugin hands invocations to `Commands.handle`.

Every wrong input gets one line saying which command, what was wrong and what to
do; nothing stored changes unless the command succeeds.
"""

from __future__ import annotations

import logging
import re
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot.errors import UpstreamError, UserError
from bot.filters import check_regex
from bot.model import ChannelRef, Filters, Subscription, TargetKind
from bot.protocols import Choice, Invocation, Reply

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)

HELP = """Starling commands:
/follow <network> <account or URL> [options] — relay an account or feed into this channel
/search <network> <query> [options] — relay posts matching a search
/unfollow <id> — stop a subscription (ids are in /list)
/resume <id> — restart a paused subscription once its cause is fixed
/mirror <id> <network> <account> — while #id's network is down, relay this account instead
/post [--to a,b] [--reply URL] [--quote URL] [--cw W] [--image URL --alt TEXT] [--thread] <text>
    — post for the team (/post --preview … shows what each network gets)
/approve <n>, /reject <n> — decide on a post request
/undo — remove your last post (within an hour) from every network
/accounts — the accounts Starling can post to
/list — subscriptions in this channel
/status — how each network is doing
/help — this text
Options: --include WORD, --exclude WORD (repeatable), --regex PATTERN, --no-replies, \
--no-reposts, --last N (also post the newest N now), --every 10m (how often to check)"""

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(slots=True)
class FollowArgs:
    network: str
    query: str
    filters: Filters
    last: int = 0
    interval_s: float | None = None
    words: list[str] = field(default_factory=list)


def _duration(text: str) -> float:
    match = _DURATION.match(text.strip().lower())
    if not match:
        raise UserError(f"{text!r} is not a duration; write it like 90s, 10m or 2h")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_follow(args: str, *, max_backlog: int) -> FollowArgs:
    """Parse `<network> <query…> [--options]`; raises `UserError` naming the problem."""
    try:
        tokens = shlex.split(args)
    except ValueError as err:
        raise UserError(f"could not read the arguments ({err}); check the quotes") from None
    include: list[str] = []
    exclude: list[str] = []
    regex = ""
    skip_replies = skip_reposts = False
    last = 0
    interval: float | None = None
    words: list[str] = []
    it = iter(tokens)
    for token in it:
        if not token.startswith("--"):
            words.append(token)
            continue
        name = token[2:].lower()
        if name in ("no-replies", "no-reposts"):
            skip_replies |= name == "no-replies"
            skip_reposts |= name == "no-reposts"
            continue
        if name not in ("include", "exclude", "regex", "last", "every"):
            raise UserError(f"unknown option {token}; see /help for the options")
        value = next(it, None)
        if value is None:
            raise UserError(f"{token} needs a value, e.g. {token} python")
        if name == "include":
            include += [w for w in value.split(",") if w.strip()]
        elif name == "exclude":
            exclude += [w for w in value.split(",") if w.strip()]
        elif name == "regex":
            check_regex(value)
            regex = value
        elif name == "last":
            if not (value.isascii() and value.isdigit()) or int(value) > max_backlog:
                raise UserError(f"--last takes a number from 0 to {max_backlog}")
            last = int(value)
        else:
            interval = _duration(value)
    if len(words) < 2:
        raise UserError(
            "name a network and what to follow, e.g. /follow feeds https://example.com/feed.xml"
        )
    filters = Filters(
        tuple(w.strip() for w in include),
        tuple(w.strip() for w in exclude),
        regex,
        skip_replies,
        skip_reposts,
    )
    return FollowArgs(words[0].lower(), " ".join(words[1:]), filters, last, interval, words)


def _every(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def describe(sub: Subscription) -> str:
    what = sub.target.display or sub.target.key
    kind = "search" if sub.target.kind is TargetKind.SEARCH else "follow"
    line = f"#{sub.id} {sub.target.network} {kind} {what} — every {_every(sub.interval_s)}"
    if sub.filters.describe():
        line += f" — filters: {sub.filters.describe()}"
    if sub.mirror_of is not None:
        line += f" — mirror of #{sub.mirror_of}"
    if sub.paused_reason:
        line += f" — PAUSED: {sub.paused_reason}"
    return line


class Commands:
    def __init__(self, app: App) -> None:
        self._app = app

    def _confirm(self, text: str) -> Reply:
        """A subscription change: for the member who asked, or the whole channel if configured."""
        return Reply(text, ephemeral=not self._app.settings.public_confirmations, changed=True)

    def command_names(self) -> list[str]:
        return [
            "follow", "search", "unfollow", "mirror", "resume", "list", "status", "help",
            "post", "approve", "reject", "undo", "accounts",
        ]  # fmt: skip

    async def complete(self, channel: ChannelRef, field: str, prefix: str) -> list[Choice]:
        """Autocomplete for chat platforms that offer it (Discord, Slack options)."""
        prefix = prefix.lower().lstrip("#")
        if field == "network":
            return [
                Choice(name, name)
                for name, net in sorted(self._app.networks.items())
                if net.source is not None and name.startswith(prefix)
            ][:25]
        if field == "subscription":
            subs = await self._app.store.list_subscriptions(channel)
            return [
                Choice(describe(sub)[:100], str(sub.id))
                for sub in subs
                if str(sub.id).startswith(prefix) or prefix in describe(sub).lower()
            ][:25]
        return []

    async def handle(self, inv: Invocation) -> Reply:
        name = inv.command.lstrip("/").lower()
        handler = {
            "follow": self.follow,
            "search": self.search,
            "unfollow": self.unfollow,
            "mirror": self.mirror,
            "resume": self.resume,
            "post": self._app.postback.post,
            "approve": self._app.postback.approve,
            "reject": self._app.postback.reject,
            "undo": self._app.postback.undo,
            "accounts": self.accounts,
            "list": self.list,
            "status": self.status,
            "help": self.help,
        }.get(name)
        if handler is None:
            return Reply(f"/{name}: unknown command; type /help to see what Starling understands")
        try:
            return await handler(inv)
        except UserError as err:
            return Reply(f"/{name}: {err}")
        except Exception:
            log.exception("command /%s failed", name)
            return Reply(
                f"/{name}: something went wrong on Starling's side; it is logged, try again"
            )

    async def follow(self, inv: Invocation) -> Reply:
        return await self._subscribe(inv, TargetKind.ACCOUNT)

    async def search(self, inv: Invocation) -> Reply:
        return await self._subscribe(inv, TargetKind.SEARCH)

    async def _subscribe(self, inv: Invocation, kind: TargetKind) -> Reply:
        app = self._app
        parsed = parse_follow(inv.args, max_backlog=app.settings.max_backlog)
        network = app.network(parsed.network)
        if network.source is None:
            raise UserError(f"{network.name} cannot be followed (it only publishes)")
        # A network may ask for gentler polling (X reads cost money): optional attributes.
        default = float(getattr(network, "default_interval_s", app.settings.default_interval_s))
        floor = max(app.settings.min_interval_s, float(getattr(network, "min_interval_s", 0.0)))
        interval = parsed.interval_s if parsed.interval_s is not None else max(default, floor)
        if interval < floor:
            raise UserError(f"--every must be at least {_every(floor)} for {network.name}")
        target = await network.source.resolve(kind, parsed.query)
        try:
            sub, queued = await app.subscribe(inv, target, parsed.filters, interval, parsed.last)
        except UpstreamError as err:
            raise UserError(
                f"could not read {parsed.query}: {err}. Check the address and try again"
            ) from None
        what = "Searching" if kind is TargetKind.SEARCH else "Following"
        text = (
            f"{what} {target.display or target.key} on {network.name} as #{sub.id}; "
            f"new posts will appear here (checked every {_every(interval)})."
        )
        if queued:
            text += f" Posting the newest {queued} now."
        return self._confirm(text)

    async def unfollow(self, inv: Invocation) -> Reply:
        arg = inv.args.strip().lstrip("#")
        if not (arg.isascii() and arg.isdigit()):
            raise UserError("give the subscription id from /list, e.g. /unfollow 3")
        sub = await self._app.unsubscribe(inv.channel, int(arg))
        if sub is None:
            raise UserError(f"there is no subscription #{arg} in this channel; /list shows the ids")
        return self._confirm(f"Stopped #{sub.id} ({sub.target.display or sub.target.key}).")

    async def mirror(self, inv: Invocation) -> Reply:
        """Link an account on another network that stands in while the primary is down."""
        parts = inv.args.split(maxsplit=2)
        if len(parts) < 3 or not (
            parts[0].lstrip("#").isascii() and parts[0].lstrip("#").isdigit()
        ):
            raise UserError(
                "give a subscription id, a network and an account, "
                "e.g. /mirror 3 bluesky @alice.bsky.social"
            )
        sub_id, network_name, query = int(parts[0].lstrip("#")), parts[1], parts[2]
        subs = {s.id: s for s in await self._app.store.list_subscriptions(inv.channel)}
        primary = subs.get(sub_id)
        if primary is None:
            raise UserError(
                f"there is no subscription #{sub_id} in this channel; /list shows the ids"
            )
        if primary.mirror_of is not None:
            raise UserError(
                f"#{sub_id} is itself a mirror; link the mirror to #{primary.mirror_of}"
            )
        network = self._app.network(network_name)
        if network.name == primary.target.network:
            raise UserError(
                f"a mirror must be on another network than {network.name}, "
                "so that it survives that network's outage"
            )
        if network.source is None:
            raise UserError(f"{network.name} cannot be followed (it only publishes)")
        target = await network.source.resolve(TargetKind.ACCOUNT, query)
        try:
            sub, _ = await self._app.subscribe(
                inv, target, primary.filters, primary.interval_s, 0, mirror_of=primary
            )
        except UpstreamError as err:
            raise UserError(f"could not read {query}: {err}. Check it and try again") from None
        return self._confirm(
            f"Linked #{sub.id} ({target.display or target.key} on {network.name}) as a mirror of "
            f"#{primary.id}: while {primary.target.network} is down, posts come from "
            f"{network.name} here."
        )

    async def resume(self, inv: Invocation) -> Reply:
        arg = inv.args.strip().lstrip("#")
        if not (arg.isascii() and arg.isdigit()):
            raise UserError("give the subscription id from /list, e.g. /resume 3")
        sub = await self._app.resume(inv.channel, int(arg))
        if sub is None:
            raise UserError(f"there is no subscription #{arg} in this channel; /list shows the ids")
        await self._app.dispatcher.recover()
        return self._confirm(f"Resumed #{sub.id} ({sub.target.display or sub.target.key}).")

    async def accounts(self, inv: Invocation) -> Reply:
        return Reply(self._app.postback.accounts())

    async def list(self, inv: Invocation) -> Reply:
        subs = await self._app.store.list_subscriptions(inv.channel)
        if not subs:
            return Reply(
                "No subscriptions in this channel yet. Try /follow feeds https://example.com/feed.xml"
            )
        return Reply("\n".join(describe(sub) for sub in subs))

    async def status(self, inv: Invocation) -> Reply:
        return Reply(await self._app.status_text())

    async def help(self, inv: Invocation) -> Reply:
        networks = ", ".join(self._app.network_names())
        return Reply(f"{HELP}\nNetworks: {networks}")
