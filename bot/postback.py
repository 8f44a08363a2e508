"""Post back from chat: compose, approve, cross-post to several networks, never lose one.

Every post is a row (with one target row per network) before anything is sent.
Each network is published to with a deterministic idempotency key, so a retry, or
a restart after `kill -9`, reaches every network exactly once as long as the
publisher honours the key (Mastodon's Idempotency-Key, a Bluesky record key, a
Nostr event id, X's recent-posts check). A network that is down keeps its part
of the post; the sender loop delivers it when the network answers again.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from bot.clock import Clock
from bot.crashpoints import crashpoint
from bot.errors import UpstreamError, UserError
from bot.model import Action, ChannelRef, RichMessage
from bot.postimages import ImageFetcher, check_alt, describe
from bot.protocols import (
    Chat,
    Draft,
    DraftImage,
    Invocation,
    Network,
    Preparer,
    Reply,
    ReplyKind,
)
from bot.render import defuse
from bot.store.base import Postback, PostTarget, Store
from bot.threadsplit import split_thread
from bot.timefmt import hhmm

log = logging.getLogger(__name__)

RETRY_BASE_S = 30.0
RETRY_MAX_S = 1800.0
UNDO_WINDOW_S = 3600.0
PREVIEW_HEAD = "Preview, nothing is posted yet:"
WILL_RETRY = "; will retry"


@dataclass(frozen=True, slots=True)
class PostPolicy:
    """Who may post where, from settings (`postback_*`)."""

    targets: Mapping[str, list[str]]  # "platform:channel" or "*" → networks
    approval: tuple[str, ...]  # channels ("platform:channel" or "*") needing approval
    approvers: frozenset[str]
    direct_posters: frozenset[str]
    posters: frozenset[str]  # empty: everyone may post (or ask)
    self_approval: bool
    rate_per_hour: int
    fallback: Mapping[str, str]  # network → network to post to at once while it is down
    max_chars: int = 5000
    hold_s: float = 60.0  # a part held for an outage is tried again after this
    check_s: float = 15.0  # how often waiting parts are looked at
    retry_s: float = RETRY_BASE_S  # the first wait after a network did not take a part
    require_alt: bool = True  # an image without alt text is refused
    allow_private: bool = False  # image links may point at private addresses (tests, LANs)

    def channel_key(self, channel: ChannelRef) -> str:
        return f"{channel.platform}:{channel.native_id}"

    def default_targets(self, channel: ChannelRef) -> list[str]:
        return list(self.targets.get(self.channel_key(channel), self.targets.get("*", [])))

    def needs_approval(self, channel: ChannelRef, user: str, roles: frozenset[str]) -> bool:
        wanted = "*" in self.approval or self.channel_key(channel) in self.approval
        return wanted and not member_of(user, self.direct_posters | self.approvers, roles)

    def named(self, prefix: str) -> frozenset[str]:
        """The ids the settings name with `prefix` ("group:", "role:"), so a chat knows
        which memberships to look up."""
        entries = self.approvers | self.direct_posters | self.posters
        return frozenset(e[len(prefix) :] for e in entries if e.startswith(prefix))


def member_of(user: str, group: frozenset[str], roles: frozenset[str] = frozenset()) -> bool:
    """`user` as a chat names it ("U123", or Discord's "name (id)") is in `group`,
    which may list the full form, just the id, or `role:<id>` / `group:<id>` for a
    Discord role or Slack user group among the member's `roles`."""
    if user in group:
        return True
    if any(f"role:{r}" in group or f"group:{r}" in group for r in roles):
        return True
    head, _, tail = user.rpartition(" (")
    return bool(head) and tail.endswith(")") and tail[:-1] in group


def same_channel(a: ChannelRef, b: ChannelRef) -> bool:
    """Names differ between a typed command and a button click; ids do not."""
    return (a.platform, a.native_id) == (b.platform, b.native_id)


def delete_button(postback_id: int) -> Action:
    return Action("Delete", "undo", str(postback_id), "danger")


@dataclass(frozen=True, slots=True)
class PostRequest:
    """`/post` as typed: where to, what, and whether a long text may become a thread."""

    targets: list[str]
    draft: Draft
    thread: bool = False


POST_OPTIONS = ("--to", "--reply", "--quote", "--cw", "--image", "--alt")


def parse_post(args: str) -> PostRequest:
    """`[--to a,b] [--reply URL] [--quote URL] [--cw TEXT] [--image URL [--alt TEXT]]…
    [--thread] [--] text…`; the text is kept as typed, `_` in `--cw`/`--alt` means a
    space, and `--` ends the options (for a text that begins with "--")."""
    rest = args.strip()
    targets: list[str] = []
    reply_to = quote_of = warning = ""
    images: list[DraftImage] = []
    thread = False
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        rest = rest.lstrip()
        if option == "--":  # the end of the options: a text may begin with "--" itself
            break
        if option == "--thread":
            thread = True
            continue
        if option not in POST_OPTIONS:
            raise UserError(
                f"unknown option {option}; use --to, --reply, --quote, --cw, --image, --alt "
                "or --thread"
            )
        value, _, rest = rest.partition(" ")
        rest = rest.lstrip()
        if not value:
            raise UserError(f"{option} needs a value")
        if option == "--to":
            targets += [n.strip().lower() for n in value.split(",") if n.strip()]
        elif option == "--reply":
            reply_to = value
        elif option == "--quote":
            quote_of = value
        elif option == "--image":
            images.append(DraftImage(value))
        elif option == "--alt":
            if not images or images[-1].alt:
                raise UserError("--alt describes the --image just before it; give --image first")
            images[-1] = DraftImage(images[-1].url, value.replace("_", " ").strip())
        else:
            warning = value.replace("_", " ")
    draft = Draft(rest, reply_to, quote_of, warning, tuple(images))
    return PostRequest(targets, draft, thread)


def format_post(request: PostRequest) -> str:
    """The `/post` arguments `parse_post` reads back as `request`, for composer forms.

    Each option value is one word: a link keeps its first word, the network names
    lose their spaces, and spaces in a content warning or alt text become `_`.
    """
    draft = request.draft
    words = ["--thread"] if request.thread else []
    targets = ",".join(name for name in ("".join(t.split()) for t in request.targets) if name)
    if targets:
        words += ["--to", targets]
    for option, link in (("--reply", draft.reply_to), ("--quote", draft.quote_of)):
        if link.strip():
            words += [option, link.split()[0]]
    if draft.content_warning.strip():
        words += ["--cw", "_".join(draft.content_warning.split())]
    for image in draft.images:
        if image.url.strip():
            words += ["--image", image.url.split()[0]]
            if image.alt.strip():
                words += ["--alt", "_".join(image.alt.split())]
    text = draft.text.strip()
    if text.startswith("--"):
        words.append("--")  # else `parse_post` would read the text's first word as an option
    return " ".join([*words, text])


class PostBack:
    def __init__(
        self,
        store: Store,
        networks: Mapping[str, Network],
        chats: Mapping[str, Chat],
        clock: Clock,
        policy: PostPolicy,
        *,
        is_down: Callable[[str], bool],
    ) -> None:
        self._store = store
        self._networks = networks
        self._chats = chats
        self._clock = clock
        self.policy = policy
        self._is_down = is_down
        self._wake = asyncio.Event()
        self._locks: dict[int, asyncio.Lock] = {}
        self._install = ""
        self._fetcher = ImageFetcher(allow_private=policy.allow_private)
        self._image_cache: dict[int, tuple[DraftImage, ...]] = {}  # post id → downloaded
        groups = policy.named("group:")
        for chat in chats.values():  # Slack looks up only the user groups the settings name
            watch = getattr(getattr(chat, "user_groups", None), "watch", None)
            if groups and callable(watch):
                watch(groups)

    # --- commands -------------------------------------------------------------------

    def accounts(self) -> str:
        lines = []
        for name, net in sorted(self._networks.items()):
            if net.publisher is None:
                continue
            account = str(getattr(net.publisher, "account", "") or "configured")
            state = "down — posts wait for it" if self._is_down(name) else "up"
            lines.append(f"{name}: {account} — {state}")
        if not lines:
            return "No accounts are configured to post to; see README (post-back) to add one."
        return "Accounts Starling can post to:\n" + "\n".join(lines)

    def _publishable(self, network: str) -> str:
        net = self._networks.get(network)
        if net is None:
            known = ", ".join(sorted(n for n, x in self._networks.items() if x.publisher))
            raise UserError(f"unknown network {network!r}; accounts are set up for: {known}")
        if net.publisher is None:
            raise UserError(f"no account is configured for {network}; see /accounts")
        return net.name

    def prepare(self, networks: list[str], draft: Draft, thread: bool = False) -> list[str]:
        """One preview line per network (one per part for a thread); raises `UserError`
        naming every problem."""
        previews: list[str] = []
        problems: list[str] = []
        for network in networks:
            publisher = self._networks[network].publisher
            if thread:
                try:
                    parts = self.thread_parts(network, draft)
                except UserError as err:
                    problems.append(f"{network}: {err}")
                    continue
                if len(parts) > 1:
                    if isinstance(publisher, Preparer) and draft.images:
                        first = publisher.prepare(replace(draft, text=parts[0]))
                        problems += [f"{network}: {p}" for p in first.problems]
                    previews.append(f"{network}, as a thread of {len(parts)}:")
                    previews.append(f"  {parts[0]}{describe(draft.images)}")
                    previews += [f"  {part}" for part in parts[1:]]
                    continue
            images = describe(draft.images)
            if isinstance(publisher, Preparer):
                prep = publisher.prepare(draft)
                if prep.problems and not thread:
                    problems += [f"{network}: {p}" for p in prep.problems]
                    if self._splittable(network, draft):
                        problems[-1] += " (add --thread to split it into several posts)"
                elif prep.problems and draft.images:  # the thread check saw the text only
                    problems += [f"{network}: {p}" for p in prep.problems if "image" in p]
                previews.append(f"{network}: {prep.text}{images}")
            else:
                previews.append(f"{network}: {draft.text}{images}")
        if problems:
            raise UserError("; ".join(problems))
        return previews

    def thread_parts(self, network: str, draft: Draft) -> list[str]:
        """The texts `network` receives for a `--thread` post: one when it fits."""
        publisher = self._networks[network].publisher
        if not isinstance(publisher, Preparer):
            return [draft.text]

        def fits(text: str) -> bool:
            return not publisher.prepare(replace(draft, text=text, images=())).problems

        return split_thread(draft.text, fits)

    def _splittable(self, network: str, draft: Draft) -> bool:
        try:
            return len(self.thread_parts(network, draft)) > 1
        except UserError:
            return False

    async def post(self, inv: Invocation) -> Reply:
        policy = self.policy
        if policy.posters and not member_of(inv.user, policy.posters, inv.roles):
            raise UserError("you are not among the members allowed to post for the team")
        args = inv.args.lstrip()
        preview_only = args.startswith("--preview ") or args == "--preview"
        request = parse_post(args.removeprefix("--preview") if preview_only else args)
        wanted, draft = request.targets, request.draft
        if not draft.text.strip():
            raise UserError("nothing to post; write the text after /post")
        if len(draft.text) > policy.max_chars:
            raise UserError(
                f"the text is {len(draft.text)} characters; the most is {policy.max_chars}"
            )
        networks = [self._publishable(n) for n in (wanted or policy.default_targets(inv.channel))]
        networks = list(dict.fromkeys(networks))
        if not networks:
            raise UserError(
                "no networks to post to: add --to mastodon,bluesky (or set postback_targets)"
            )
        recent = await self._store.postbacks_since(inv.user, time.time() - 3600)
        if recent >= policy.rate_per_hour:
            raise UserError(
                f"you have posted {recent} times in the last hour (the limit is "
                f"{policy.rate_per_hour}); try again later"
            )
        check_alt(draft.images, policy.require_alt)
        previews = self.prepare(networks, draft, request.thread)
        images = await self._fetcher.fetch_all(draft.images)  # refused here: nothing is posted
        if preview_only:  # the composer's first step: what each network would receive
            return Reply(PREVIEW_HEAD + "\n" + "\n".join(previews), kind=ReplyKind.PREVIEW)
        if policy.needs_approval(inv.channel, inv.user, inv.roles):
            postback = await self._store.create_postback(
                inv.channel, inv.user, draft, networks, "awaiting_approval", thread=request.thread
            )
            self._keep_images(postback.id, images)
            await self._show_request(postback, previews)
            return Reply(f"Asked for approval: request #{postback.id} is waiting for an approver.")
        postback = await self._store.create_postback(
            inv.channel, inv.user, draft, networks, "approved", thread=request.thread
        )
        self._keep_images(postback.id, images)
        lines = await self.send(postback)
        return Reply(
            f"Post #{postback.id}: " + "; ".join(lines),
            ephemeral=False,
            actions=(delete_button(postback.id),),
        )

    def _keep_images(self, postback_id: int, images: tuple[DraftImage, ...]) -> None:
        """The downloaded bytes, for the sends to come; the links are in the post's row."""
        if images:
            self._image_cache[postback_id] = images

    async def _images(self, postback: Postback) -> tuple[DraftImage, ...]:
        """A post's images with their bytes: downloaded at /post, or again after a restart."""
        if postback.draft.images and postback.draft.images[0].data:
            return postback.draft.images
        cached = self._image_cache.get(postback.id)
        if cached is None:
            cached = await self._fetcher.fetch_all(postback.draft.images)
            if cached:
                self._image_cache[postback.id] = cached
        return cached

    async def _show_request(self, postback: Postback, previews: list[str]) -> None:
        chat = self._chats.get(postback.channel.platform)
        if chat is None:
            return
        message = RichMessage(
            title=f"Post request #{postback.id} by {defuse(postback.author)}",
            text="\n".join(defuse(p) for p in previews),
            footer=f"An approver can /approve {postback.id} or /reject {postback.id}.",
            actions=(
                Action("Approve", "approve", str(postback.id), "primary"),
                Action("Reject", "reject", str(postback.id), "danger"),
            ),
        )
        ref = await chat.send(postback.channel, message, f"starling-request:{postback.id}")
        await self._store.set_request_ref(postback.id, ref)

    async def _decide(self, inv: Invocation, approve: bool) -> Reply:
        verb = "approve" if approve else "reject"
        arg = inv.args.strip().lstrip("#")
        if not (arg.isascii() and arg.isdigit()):
            raise UserError(f"give the request number, e.g. /{verb} 7")
        postback = await self._store.get_postback(int(arg))
        if postback is None or not same_channel(postback.channel, inv.channel):
            raise UserError(f"there is no post request #{arg} in this channel")
        if not member_of(inv.user, self.policy.approvers, inv.roles):
            raise UserError(f"only approvers can {verb} posts here")
        if approve and postback.author == inv.user and not self.policy.self_approval:
            raise UserError("you cannot approve your own post; ask another approver")
        decided = await self._store.decide_postback(
            postback.id, "approved" if approve else "rejected", inv.user, "awaiting_approval"
        )
        if decided is None:
            current = await self._store.get_postback(postback.id)
            assert current is not None
            when = hhmm(current.decided_at) if current.decided_at else "earlier"
            raise UserError(f"request #{postback.id} was already {current.state} by "
                            f"{current.decided_by or 'someone'} at {when}")  # fmt: skip
        stamp = f"{'Approved' if approve else 'Rejected'} by {defuse(inv.user)} at " + hhmm(
            decided.decided_at or time.time()
        )
        await self._mark_request(decided, stamp)
        if not approve:
            return Reply(f"Rejected request #{decided.id}; nothing was posted.", ephemeral=False)
        lines = await self.send(decided)
        await self._mark_request(
            decided, stamp + "\n" + "; ".join(lines), (delete_button(decided.id),)
        )
        return Reply(f"Approved #{decided.id}: " + "; ".join(lines), ephemeral=False)

    async def approve(self, inv: Invocation) -> Reply:
        return await self._decide(inv, approve=True)

    async def reject(self, inv: Invocation) -> Reply:
        return await self._decide(inv, approve=False)

    async def _mark_request(
        self, postback: Postback, stamp: str, actions: tuple[Action, ...] = ()
    ) -> None:
        """Show the decision on the request message; its buttons go (or become Delete)."""
        chat = self._chats.get(postback.channel.platform)
        if chat is None or not postback.request_ref:
            return
        message = RichMessage(
            title=f"Post request #{postback.id} by {defuse(postback.author)}",
            text=defuse(postback.draft.text),
            footer=defuse(stamp),
            actions=actions,
        )
        try:
            await chat.edit(postback.channel, postback.request_ref, message)
        except Exception:
            log.warning("could not update request #%d", postback.id, exc_info=True)

    async def undo(self, inv: Invocation) -> Reply:
        """`/undo` removes the member's last post; `/undo n` (the Delete button) post #n."""
        arg = inv.args.strip().lstrip("#")
        last: Postback | None
        if arg:
            last = await self._undoable(inv, arg)
        else:
            last = await self._store.last_postback(inv.channel, inv.user)
        if last is None or time.time() - last.created_at > UNDO_WINDOW_S:
            raise UserError("you have no post from the last hour here to undo")
        # Claimed first: a second click (or a second /undo) finds it taken and deletes nothing.
        claimed = await self._store.decide_postback(last.id, "undone", inv.user, "approved")
        if claimed is None:
            current = await self._store.get_postback(last.id) or last
            raise _already_removed(last.id, current)
        removed, problems = [], []
        async with self._lock(last.id):  # a send in progress finishes first
            fresh = await self._store.get_postback(last.id) or claimed
            for target in fresh.targets:
                publisher = (
                    self._networks[target.network].publisher
                    if target.network in self._networks
                    else None
                )
                if target.state == "pending":
                    await self._store.update_target(last.id, target.network, state="deleted")
                    removed.append(f"{target.network} (not sent yet)")
                elif target.state in ("sent", "failed") and publisher is not None:
                    if not (published := _published(target)):
                        continue
                    try:
                        for native_id in reversed(published):  # a thread from its end
                            await publisher.delete(native_id)
                    except (UpstreamError, UserError) as err:
                        problems.append(f"{target.network}: {err}")
                        continue
                    await self._store.update_target(last.id, target.network, state="deleted")
                    removed.append(target.network)
        where = ", ".join(removed) or "nowhere"
        text = f"Removed post #{last.id} from {where}"
        if problems:
            text += "; could not remove it from " + "; ".join(problems)
        when = hhmm(claimed.decided_at or time.time())
        stamp = f"Removed by {inv.user} at {when} from {where}"
        await self._mark_request(
            claimed, stamp + ("; not from " + "; ".join(problems) if problems else "")
        )
        # Claimed above, so a second click would do nothing: its Delete button can go.
        return Reply(text + ".", ephemeral=False, kind=ReplyKind.UNDONE)

    async def _undoable(self, inv: Invocation, arg: str) -> Postback:
        """Post #arg, if this member may remove it: its author or an approver."""
        if not (arg.isascii() and arg.isdigit()):
            raise UserError("give the post number, e.g. /undo 7, or nothing for your last post")
        postback = await self._store.get_postback(int(arg))
        if postback is None or not same_channel(postback.channel, inv.channel):
            raise UserError(f"there is no post #{arg} in this channel")
        if postback.author != inv.user and not member_of(
            inv.user, self.policy.approvers, inv.roles
        ):
            raise UserError(f"only its author or an approver can remove post #{arg}")
        if postback.state == "undone":
            raise _already_removed(arg, postback)
        if postback.state != "approved":
            raise UserError(f"post #{arg} was never posted ({postback.state.replace('_', ' ')})")
        return postback

    # --- sending --------------------------------------------------------------------

    def _lock(self, postback_id: int) -> asyncio.Lock:
        """One sender per post at a time: `/post` and the retry loop never race."""
        return self._locks.setdefault(postback_id, asyncio.Lock())

    async def send(self, postback: Postback) -> list[str]:
        """Publish every pending target now (or hold it); one result line per network."""
        async with self._lock(postback.id):
            fresh = await self._store.get_postback(postback.id)
            lines = await self._send(fresh or postback)
            await self._settle_images(postback.id)
            return lines

    async def _settle_images(self, postback_id: int) -> None:
        """Drop a post's downloaded images once no network waits for them."""
        if postback_id not in self._image_cache:
            return
        current = await self._store.get_postback(postback_id)
        if current is None or all(t.state != "pending" for t in current.targets):
            self._image_cache.pop(postback_id, None)

    async def _send(self, postback: Postback) -> list[str]:
        lines = []
        networks = [t.network for t in postback.targets]
        for target in postback.targets:
            if target.state != "pending":
                continue
            network = target.network
            if self._is_down(network):
                fallback = self.policy.fallback.get(network)
                note = f"{network} is down — will send when it is back"
                # Held, and tried again later: the retry is also the probe that
                # notices the network is back when nothing else talks to it.
                await self._store.update_target(
                    postback.id, network, not_before=time.time() + self.policy.hold_s
                )
                usable = bool(
                    fallback
                    and fallback in self._networks
                    and self._networks[fallback].publisher is not None
                )
                if fallback and fallback not in networks and usable:
                    lines.append(f"{note}; sending to {fallback} meanwhile")
                    await self._store.add_target(postback.id, fallback)
                    networks.append(fallback)
                    lines.append(await self._publish(postback, fallback, 0))
                    continue
                lines.append(note)
                continue
            lines.append(await self._publish(postback, network, target.attempts))
        return lines

    async def _publish(self, postback: Postback, network: str, attempts: int) -> str:
        publisher = self._networks[network].publisher
        assert publisher is not None
        key = f"starling-post:{await self._install_id()}:{postback.id}:{network}"
        await self._store.update_target(postback.id, network, attempts=attempts + 1)
        target = next((t for t in postback.targets if t.network == network), None)
        sent = list(target.parts) if target else []
        url = target.url if target else ""
        draft = postback.draft
        try:
            images = await self._images(postback)
            texts = self.thread_parts(network, draft) if postback.thread else [draft.text]
            # A thread carries on after the last part that went out (after a crash
            # or an outage); each part has its own idempotency key.
            for index in range(len(sent), len(texts)):
                part = Draft(
                    texts[index],
                    reply_to=sent[-1] if sent else draft.reply_to,
                    quote_of="" if sent else draft.quote_of,
                    content_warning=draft.content_warning,
                    images=images if index == 0 else (),  # a thread's pictures go first
                )
                published = await publisher.publish(part, key if index == 0 else f"{key}:{index}")
                crashpoint("after_publish")
                sent.append(published.native_id)
                url = url or published.url
                if len(texts) > 1:
                    await self._store.update_target(
                        postback.id, network, native_id=sent[0], url=url, parts="\n".join(sent)
                    )
        except UserError as err:
            await self._store.update_target(postback.id, network, state="failed", error=str(err))
            return f"{network} refused it: {err}" + _so_far(sent, url)
        except UpstreamError as err:
            if err.outcome.is_outage_signal:
                delay = err.retry_after_s or min(self.policy.retry_s * 2**attempts, RETRY_MAX_S)
                await self._store.update_target(
                    postback.id, network, error=str(err), not_before=time.time() + delay
                )
                return f"{network} did not take it yet ({err}){WILL_RETRY}"
            await self._store.update_target(postback.id, network, state="failed", error=str(err))
            return f"{network} failed: {err}" + _so_far(sent, url)
        await self._store.update_target(
            postback.id, network, state="sent", native_id=sent[0], url=url, parts="\n".join(sent)
        )
        return f"{network}: {url}" + (f" (a thread of {len(sent)})" if len(sent) > 1 else "")

    async def _install_id(self) -> str:
        """A random id of this database, part of every idempotency key: post numbers
        start again at 1 in a new database (a reset `./data`, a second install on the
        same account), and Bluesky record keys and Mastodon's Idempotency-Key must not
        take the new post #1 for an old one."""
        if not self._install:
            found = await self._store.plugin_state_get("core", "install_id")
            if found is None:
                found = secrets.token_hex(6)
                await self._store.plugin_state_put("core", "install_id", found)
            self._install = found
        return self._install

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Send what waits: held for an outage, retried after an error, or left by a crash."""
        while True:
            for waiting in await self._store.postbacks_to_send():
                lock = self._lock(waiting.id)
                if lock.locked():
                    continue  # /post or /approve is sending it right now
                async with lock:
                    postback = await self._store.get_postback(waiting.id) or waiting
                    now = time.time()
                    due = [
                        t for t in postback.targets if t.state == "pending" and t.not_before <= now
                    ]
                    if not due:
                        continue
                    lines = [await self._publish(postback, t.network, t.attempts) for t in due]
                    await self._settle_images(postback.id)
                # Only news is told: a part that is still not taken stays quiet until it is.
                settled = [line for line in lines if not line.endswith(WILL_RETRY)]
                if settled:
                    await self._tell(
                        postback, f"Post #{postback.id}, sent late: " + "; ".join(settled)
                    )
            self._wake.clear()
            try:
                async with asyncio.timeout(self.policy.check_s):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _tell(self, postback: Postback, text: str) -> None:
        chat = self._chats.get(postback.channel.platform)
        if chat is None:
            return
        key = f"starling-postback:{postback.id}:{int(time.time())}"
        try:
            await chat.send(postback.channel, RichMessage(text=defuse(text)), key)
        except Exception:
            log.warning("could not report post #%d in its channel", postback.id, exc_info=True)


def _already_removed(number: int | str, postback: Postback) -> UserError:
    """What /undo says about a post someone already removed (by number as it was given)."""
    when = hhmm(postback.decided_at) if postback.decided_at else "earlier"
    return UserError(
        f"post #{number} was already removed by {postback.decided_by or 'someone'} at {when}"
    )


def _published(target: PostTarget) -> tuple[str, ...]:
    """Every post a target put on its network: the parts of a thread, or the one post."""
    return target.parts or ((target.native_id,) if target.native_id else ())


def _so_far(sent: list[str], url: str) -> str:
    """For a thread that stopped part-way: what is already out."""
    return f" after {len(sent)} part(s) of the thread went out ({url})" if sent else ""
