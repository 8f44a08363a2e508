"""Post back from chat, as members and approvers see it."""

from __future__ import annotations

import asyncio
import time

from bot.errors import Outcome, UpstreamError
from bot.model import FetchResult, Target, TargetKind
from bot.protocols import Draft, HealthRecorder, Preparation, Published
from bot.testing import RecordingChat
from tests.conftest import RunningBot, StartBot


class TeamAccount:
    """A network that publishes, honouring idempotency keys as Mastodon's API does.

    `down` makes it refuse connections; `lose_response` makes it store the post and
    then fail, as when the answer is lost on the wire.
    """

    def __init__(self, name: str, limit: int = 500) -> None:
        self.name = name
        self.aliases = ()
        self.description = "test publishing network"
        self.source = self
        self.publisher = self
        self.account = f"@team@{name}.example"
        self.limit = limit
        self.posts: dict[str, Draft] = {}
        self.by_key: dict[str, str] = {}
        self.deleted: list[str] = []
        self.down = False
        self.lose_response = False
        self.health: HealthRecorder | None = None

    def _outcome(self, outcome: Outcome) -> None:
        if self.health is not None:
            self.health.record(self.name, f"{self.name}.example", outcome)

    async def resolve(self, kind: TargetKind, query: str) -> Target:
        return Target(self.name, kind, query, query)

    async def fetch(self, target: Target, cursor: str | None) -> FetchResult:
        return FetchResult([], cursor)

    def prepare(self, draft: Draft) -> Preparation:
        problems: tuple[str, ...] = ()
        if len(draft.text) > self.limit:
            problems = (f"{len(draft.text)} characters, the limit is {self.limit}",)
        return Preparation(draft.text, problems)

    async def publish(self, draft: Draft, idempotency_key: str) -> Published:
        if self.down:
            self._outcome(Outcome.REFUSED)
            raise UpstreamError(Outcome.REFUSED, f"{self.name}.example refused the connection")
        native = self.by_key.get(idempotency_key)
        if native is None:
            native = self.by_key[idempotency_key] = str(len(self.posts) + 1)
            self.posts[native] = draft
        self._outcome(Outcome.OK)
        if self.lose_response:
            self.lose_response = False
            raise UpstreamError(Outcome.TIMEOUT, f"{self.name}.example did not answer")
        return Published(native, f"https://{self.name}.example/p/{native}")

    async def delete(self, native_id: str) -> None:
        self.deleted.append(native_id)
        self.posts.pop(native_id, None)

    async def aclose(self) -> None:
        return None


async def _bot(
    start_bot: StartBot, **options: object
) -> tuple[RunningBot, TeamAccount, TeamAccount]:
    masto, sky = TeamAccount("masto"), TeamAccount("sky", limit=30)
    bot = await start_bot(RecordingChat(), extra_networks={"masto": masto, "sky": sky}, **options)
    masto.health = sky.health = bot.app.health
    return bot, masto, sky


async def test_post_to_two_networks_answers_with_each_link(start_bot: StartBot) -> None:
    bot, masto, sky = await _bot(start_bot)
    assert "masto: @team@masto.example — up" in await bot.say("/accounts")
    answer = await bot.say("/post --to masto,sky Hello from the team")
    assert answer == ("Post #1: masto: https://masto.example/p/1; sky: https://sky.example/p/1")
    assert masto.posts["1"].text == "Hello from the team"
    assert sky.posts["1"].text == "Hello from the team"


async def test_parts_are_listed_in_the_order_typed_after_to(start_bot: StartBot) -> None:
    bot, _, _ = await _bot(start_bot)
    answer = await bot.say("/post --to sky,masto Order matters")
    assert answer == "Post #1: sky: https://sky.example/p/1; masto: https://masto.example/p/1"
    stored = await bot.app.store.get_postback(1)
    assert stored is not None
    assert [t.network for t in stored.targets] == ["sky", "masto"]


async def test_default_targets_and_content_warning(start_bot: StartBot) -> None:
    bot, masto, sky = await _bot(start_bot, postback_targets={"test:general": ["masto"]})
    await bot.say("/post --cw spoilers_ahead The ending was great")
    assert masto.posts["1"].content_warning == "spoilers ahead"
    assert sky.posts == {}


async def test_bad_input_gets_one_line_and_posts_nothing(start_bot: StartBot) -> None:
    bot, masto, sky = await _bot(start_bot, postback_rate_per_hour=2)
    assert await bot.say("/post") == "/post: nothing to post; write the text after /post"
    assert (await bot.say("/post --to nowhere hi")).startswith("/post: unknown network 'nowhere'")
    assert "no account is configured for feeds" in await bot.say("/post --to feeds hi")
    assert (await bot.say("/post hi")).startswith("/post: no networks to post to")
    long = await bot.say("/post --to masto,sky " + "x" * 40)
    assert long.startswith("/post: sky: 40 characters, the limit is 30")
    assert (await bot.say("/post --bogus hi")).startswith("/post: unknown option --bogus")
    assert masto.posts == {}
    assert sky.posts == {}
    await bot.say("/post --to masto one")
    await bot.say("/post --to masto two")
    limited = await bot.say("/post --to masto three")
    assert "you have posted 2 times in the last hour (the limit is 2)" in limited
    assert len(masto.posts) == 2


async def test_approval_flow(start_bot: StartBot) -> None:
    bot, masto, _ = await _bot(
        start_bot, postback_approval=["test:general"], postback_approvers=["boss", "tester"]
    )
    chat = bot.chat
    asked = (await chat.say("general", "/post --to masto Launch day!", user="intern")).text
    assert asked == "Asked for approval: request #1 is waiting for an approver."
    request = chat.in_channel("general")[-1]
    assert request.message.title == "Post request #1 by intern"
    assert "masto: Launch day!" in request.message.text
    assert masto.posts == {}

    denied = (await chat.say("general", "/approve 1", user="intern")).text
    assert denied == "/approve: only approvers can approve posts here"
    approved = (await chat.say("general", "/approve 1", user="boss")).text
    assert approved == "Approved #1: masto: https://masto.example/p/1"
    assert request.edits[-1].footer.startswith("Approved by boss at ")
    again = (await chat.say("general", "/approve 1", user="tester")).text
    assert again.startswith("/approve: request #1 was already approved by boss at ")
    assert len(masto.posts) == 1

    own = (await chat.say("general", "/post --to masto My own idea", user="tester")).text
    assert own.startswith("Post #2"), "approvers post directly"
    await chat.say("general", "/post --to masto Bad idea", user="intern")
    assert (await chat.say("general", "/reject 3", user="boss")).text.startswith(
        "Rejected request #3"
    )
    assert [d.text for d in masto.posts.values()] == ["Launch day!", "My own idea"]


async def test_self_approval_is_refused(start_bot: StartBot) -> None:
    bot, masto, _ = await _bot(
        start_bot, postback_approval=["*"], postback_approvers=["boss"],
        postback_direct_posters=[],
    )  # fmt: skip
    await bot.chat.say("general", "/post --to masto hi", user="boss")
    assert len(masto.posts) == 1, "approvers post directly"


async def test_an_approver_cannot_approve_their_own_request(start_bot: StartBot) -> None:
    import dataclasses

    bot, masto, _ = await _bot(start_bot, postback_approval=["*"], postback_approvers=["boss"])
    # An approver who asks anyway (a policy where approvers must ask too).
    bot.app.postback.policy = dataclasses.replace(
        bot.app.postback.policy, approvers=frozenset({"boss", "lead"})
    )
    await bot.app.store.create_postback(
        bot.chat.channel("general"), "boss", Draft("Self-serving"), ["masto"], "awaiting_approval"
    )
    refused = (await bot.chat.say("general", "/approve 1", user="boss")).text
    assert refused == "/approve: you cannot approve your own post; ask another approver"
    ok = (await bot.chat.say("general", "/approve 1", user="lead")).text
    assert ok.startswith("Approved #1")
    assert [d.text for d in masto.posts.values()] == ["Self-serving"]


async def test_a_network_that_is_down_gets_its_part_later(start_bot: StartBot) -> None:
    bot, masto, sky = await _bot(start_bot)
    sky.down = True
    for _ in range(3):  # the outage watch learns sky is down
        bot.app.health.record("sky", "sky.example", Outcome.REFUSED)
    await bot.app.outages.settle()
    answer = await bot.say("/post --to masto,sky Status update")
    assert answer == (
        "Post #1: masto: https://masto.example/p/1; sky is down — will send when it is back"
    )
    assert sky.posts == {}
    sky.down = False
    target = (await bot.app.store.get_postback(1)).targets  # type: ignore[union-attr]
    await bot.app.store.update_target(1, "sky", not_before=time.time() - 1)
    assert {t.network: t.state for t in target} == {"masto": "sent", "sky": "pending"}
    bot.app.postback.wake()
    async with asyncio.timeout(10):
        while not sky.posts:
            await asyncio.sleep(0.02)
    late = [s.message.text for s in bot.chat.in_channel("general")]
    async with asyncio.timeout(5):
        while not any("sent late" in t for t in late):
            await asyncio.sleep(0.02)
            late = [s.message.text for s in bot.chat.in_channel("general")]
    assert "Post #1, sent late: sky: https://sky.example/p/1" in late
    assert len(sky.posts) == 1
    assert len(masto.posts) == 1


async def test_a_lost_answer_is_retried_without_posting_twice(start_bot: StartBot) -> None:
    bot, masto, _ = await _bot(start_bot)
    masto.lose_response = True
    answer = await bot.say("/post --to masto Exactly once")
    assert "will retry" in answer
    await bot.app.store.update_target(1, "masto", not_before=time.time() - 1)
    bot.app.postback.wake()
    async with asyncio.timeout(10):
        while (await bot.app.store.get_postback(1)).targets[0].state != "sent":  # type: ignore[union-attr]
            await asyncio.sleep(0.02)
    assert [d.text for d in masto.posts.values()] == ["Exactly once"]


async def test_undo_removes_the_post_everywhere(start_bot: StartBot) -> None:
    bot, masto, sky = await _bot(start_bot)
    await bot.say("/post --to masto,sky Oops")
    answer = await bot.say("/undo")
    assert answer == "Removed post #1 from masto, sky."
    assert masto.deleted == ["1"]
    assert sky.deleted == ["1"]
    assert (await bot.say("/undo")).startswith("/undo: you have no post")


LONG = " ".join(f"word{n}" for n in range(1, 13))  # 74 characters; sky takes 30


async def test_too_long_for_one_network_suggests_a_thread(start_bot: StartBot) -> None:
    bot, _, sky = await _bot(start_bot)
    answer = await bot.say(f"/post --to masto,sky {LONG}")
    assert answer.startswith("/post: sky: 74 characters, the limit is 30")
    assert answer.endswith("(add --thread to split it into several posts)")
    assert sky.posts == {}


async def test_a_thread_goes_out_as_a_reply_chain_where_needed(start_bot: StartBot) -> None:
    bot, masto, sky = await _bot(start_bot)
    preview = await bot.say(f"/post --preview --thread --to masto,sky {LONG}")
    assert "sky, as a thread of 4:" in preview
    assert f"masto: {LONG}" in preview
    answer = await bot.say(f"/post --thread --to masto,sky {LONG}")
    assert answer == (
        "Post #1: masto: https://masto.example/p/1; sky: https://sky.example/p/1 (a thread of 4)"
    )
    assert [d.text for d in masto.posts.values()] == [LONG]
    parts = list(sky.posts.values())
    assert [p.text for p in parts] == [
        "word1 word2 word3 word4 (1/4)",
        "word5 word6 word7 word8 (2/4)",
        "word9 word10 word11 (3/4)",
        "word12 (4/4)",
    ]
    assert [p.reply_to for p in parts] == ["", "1", "2", "3"], "each part answers the one before"
    assert (await bot.say("/undo")) == "Removed post #1 from masto, sky."
    assert sky.deleted == ["4", "3", "2", "1"], "a thread is removed from its end"


async def test_a_thread_cut_short_by_an_outage_carries_on_without_repeating(
    start_bot: StartBot,
) -> None:
    bot, _, sky = await _bot(start_bot)
    sky.lose_response = True  # the first part is stored upstream, its answer lost
    answer = await bot.say(f"/post --thread --to sky {LONG}")
    assert "will retry" in answer
    await bot.app.store.update_target(1, "sky", not_before=time.time() - 1)
    bot.app.postback.wake()
    async with asyncio.timeout(10):
        while (await bot.app.store.get_postback(1)).targets[0].state != "sent":  # type: ignore[union-attr]
            await asyncio.sleep(0.02)
    assert [p.text[-5:] for p in sky.posts.values()] == ["(1/4)", "(2/4)", "(3/4)", "(4/4)"]


async def test_requests_carry_approve_and_reject_buttons_that_become_delete(
    start_bot: StartBot,
) -> None:
    bot, masto, _ = await _bot(start_bot, postback_approval=["*"], postback_approvers=["boss"])
    chat = bot.chat
    await chat.say("general", "/post --to masto Buttons please", user="intern")
    request = chat.in_channel("general")[-1]
    assert [(a.label, a.command, a.args) for a in request.message.actions] == [
        ("Approve", "approve", "1"),
        ("Reject", "reject", "1"),
    ]
    await chat.say("general", "/approve 1", user="boss")
    shown = request.edits[-1]
    assert [(a.label, a.command, a.args) for a in shown.actions] == [("Delete", "undo", "1")]
    assert "masto: https://masto.example/p/1" in shown.footer

    stranger = (await chat.say("general", "/undo 1", user="someone")).text
    assert stranger == "/undo: only its author or an approver can remove post #1"
    removed = (await chat.say("general", "/undo 1", user="boss")).text
    assert removed == "Removed post #1 from masto."
    assert request.edits[-1].actions == ()
    assert request.edits[-1].footer.startswith("Removed by boss at ")
    twice = (await chat.say("general", "/undo 1", user="intern")).text
    assert twice.startswith("/undo: post #1 was already removed by boss at ")
    assert masto.deleted == ["1"]


async def test_a_direct_post_answers_with_a_delete_button(start_bot: StartBot) -> None:
    bot, _, _ = await _bot(start_bot)
    reply = await bot.chat.say("general", "/post --to masto Straight out")
    assert [(a.label, a.command, a.args) for a in reply.actions] == [("Delete", "undo", "1")]
    assert (await bot.say("/undo 7")).startswith("/undo: there is no post #7 in this channel")
    assert (await bot.say("/undo x")).startswith("/undo: give the post number")


async def test_preview_shows_each_network_and_posts_nothing(start_bot: StartBot) -> None:
    bot, masto, sky = await _bot(start_bot)
    shown = await bot.say("/post --preview --to masto,sky Hello preview")
    assert shown == ("Preview, nothing is posted yet:\nmasto: Hello preview\nsky: Hello preview")
    too_long = await bot.say("/post --preview --to sky " + "x" * 40)
    assert too_long.startswith("/post: sky: 40 characters, the limit is 30")
    assert masto.posts == sky.posts == {}


async def test_a_part_that_was_not_taken_is_retried_after_postback_retry_s(
    start_bot: StartBot,
) -> None:
    bot, masto, _ = await _bot(start_bot, postback_retry_s=0.2, postback_check_s=0.1)
    masto.lose_response = True
    answer = await bot.say("/post --to masto Try again soon")
    assert "will retry" in answer
    (late,) = await bot.chat.wait_for(1, within_s=10)
    assert late.message.text == "Post #1, sent late: masto: https://masto.example/p/1"
    assert [d.text for d in masto.posts.values()] == ["Try again soon"]


def test_member_of_matches_ids_discord_roles_and_slack_groups() -> None:
    from bot.postback import member_of

    group = frozenset({"U1", "42", "role:900", "group:S7"})
    assert member_of("U1", group)
    assert member_of("ada (42)", group), "Discord's name (id) matches its id"
    assert member_of("bob (43)", group, frozenset({"1", "900"})), "a Discord role"
    assert member_of("U2", group, frozenset({"S7"})), "a Slack user group"
    assert not member_of("U2", group, frozenset({"900x", "S8"}))
    assert not member_of("U2", group, frozenset({"U1"})), "a role is not a member id"
    assert not member_of("U2", frozenset(), frozenset({"S7"}))


async def test_approvers_and_direct_posters_by_role(start_bot: StartBot) -> None:
    bot, masto, _ = await _bot(
        start_bot,
        postback_approval=["*"],
        postback_approvers=["role:900"],
        postback_direct_posters=["group:S7"],
    )
    chat = bot.chat
    editors = frozenset({"900"})
    asked = (await chat.say("general", "/post --to masto Launch day!", user="intern")).text
    assert asked == "Asked for approval: request #1 is waiting for an approver."
    denied = (await chat.say("general", "/approve 1", user="boss", roles=frozenset({"901"}))).text
    assert denied == "/approve: only approvers can approve posts here"
    approved = (await chat.say("general", "/approve 1", user="boss", roles=editors)).text
    assert approved == "Approved #1: masto: https://masto.example/p/1"
    direct = await chat.say(
        "general", "/post --to masto Hi", user="writer", roles=frozenset({"S7"})
    )
    assert direct.text.startswith("Post #2")
    assert [d.text for d in masto.posts.values()] == ["Launch day!", "Hi"]
