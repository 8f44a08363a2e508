"""Nostr without a relay: ids, signatures, keys, event → post, config.

Everything is checked against data made elsewhere: real signed events from the
network, the official BIP-340 vectors and the NIP-19 examples.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from bot.clock import SystemClock
from bot.config import ConfigError
from bot.errors import UserError
from bot.health import HealthBook
from bot.model import TargetKind
from bot.protocols import PluginContext
from plugins.nostr import create
from plugins.nostr.events import Event, compute_id, decode_event, is_valid, sign, signature_valid
from plugins.nostr.keys import (
    nevent,
    npub,
    parse_event_id,
    parse_pubkey,
    parse_secret_key,
    xonly_hex,
)
from plugins.nostr.posts import PostBuilder, Profiles
from plugins.nostr.targets import resolve_target
from plugins.nostr.wire import parse_message

FIXTURES = Path(__file__).parent / "fixtures" / "nostr"
REAL_EVENTS = [
    json.loads(line) for line in (FIXTURES / "events.jsonl").read_text("utf-8").splitlines()
]
NIP19 = json.loads((FIXTURES / "nip19.json").read_text("utf-8"))
SECRET_HEX = "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa"


def real(prefix: str) -> dict[str, Any]:
    return next(e for e in REAL_EVENTS if e["id"].startswith(prefix))


def builder() -> PostBuilder:
    return PostBuilder("nostr", Profiles(), "https://njump.me/{nevent}", "https://njump.me/{npub}")


@pytest.mark.parametrize("raw", REAL_EVENTS, ids=[e["id"][:8] for e in REAL_EVENTS])
def test_real_events_from_the_network_verify(raw: dict[str, Any]) -> None:
    assert is_valid(decode_event(raw))


@pytest.mark.parametrize(
    "change",
    [
        {"content": "I'll take a small lillördag please."},
        {"created_at": 1684947091},
        {"tags": []},
        {"pubkey": real("55ef")["pubkey"]},
        {"sig": real("55ef")["sig"]},
    ],
    ids=["content", "created_at", "tags", "pubkey", "sig"],
)
def test_any_change_to_a_real_event_fails_verification(change: dict[str, Any]) -> None:
    assert not is_valid(decode_event({**real("cd720b23"), **change}))


def test_a_forged_event_with_a_correct_id_but_another_signer_fails() -> None:
    victim = real("cd720b23")["pubkey"]
    forger = parse_secret_key(SECRET_HEX)
    content, created_at = "send me your coins", 1684947100
    event_id = compute_id(victim, created_at, 1, (), content)
    forged_sig = forger.sign_schnorr(bytes.fromhex(event_id)).hex()
    forged = Event(event_id, victim, created_at, 1, (), content, forged_sig)
    assert not is_valid(forged)
    honest = sign(forger, kind=1, content=content, tags=(), created_at=created_at)
    assert is_valid(honest), "the same fields under the forger's own key are fine"


def _bip340_vectors() -> list[dict[str, str]]:
    with (FIXTURES / "bip340-test-vectors.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("row", _bip340_vectors(), ids=lambda r: f"vector-{r['index']}")
def test_signature_check_agrees_with_the_bip340_vectors(row: dict[str, str]) -> None:
    event = Event(
        id=row["message"].lower(),
        pubkey=row["public key"].lower(),
        created_at=0,
        kind=1,
        tags=(),
        content="",
        sig=row["signature"].lower(),
    )
    assert signature_valid(event) is (row["verification result"] == "TRUE")
    if row["secret key"]:
        assert xonly_hex(parse_secret_key(row["secret key"])) == row["public key"].lower()


def test_signing_is_bip340_and_the_id_is_reproducible() -> None:
    key = parse_secret_key(SECRET_HEX)
    one = sign(key, kind=1, content='hello\n"team"', tags=(("t", "x"),), created_at=1700000000)
    two = sign(key, kind=1, content='hello\n"team"', tags=(("t", "x"),), created_at=1700000000)
    assert is_valid(one)
    assert one.id == two.id
    assert one.pubkey == NIP19["npub"][1][1], "NIP-19's nsec belongs to NIP-19's npub"


@pytest.mark.parametrize(("text", "hex_key"), NIP19["npub"] + NIP19["nprofile"])
def test_npub_and_nprofile_decode_to_the_nip19_hex(text: str, hex_key: str) -> None:
    assert parse_pubkey(text) == hex_key
    assert parse_pubkey(f"nostr:{text}") == hex_key
    assert parse_pubkey(hex_key.upper()) == hex_key


def test_npub_encodes_like_nip19() -> None:
    for text, hex_key in NIP19["npub"]:
        assert npub(hex_key) == text


def test_nsec_decodes_like_nip19() -> None:
    text, hex_key = NIP19["nsec"][0]
    assert parse_secret_key(text).secret.hex() == hex_key


def test_nevent_from_a_real_note_round_trips() -> None:
    mention = real("cd720b23")["content"].split("nostr:")[1]
    event_id = parse_event_id(mention)
    assert len(event_id) == 64
    assert parse_event_id(nevent(event_id, real("cd720b23")["pubkey"], 1)) == event_id


@pytest.mark.parametrize(
    "query",
    [
        "npub1invalid",
        "npub180cvv07tjdrrgpa0j7j7tmnyl2yr6yr7l8j4s3evf6u64th6gkwsyjh6w7",  # bad checksum
        "3bf0c63fcb93463407af97a5e5ee64fa883d107ef9e558472c4eb9aaaefa459",  # 63 chars
        "@alice@example.social",
        "f" * 64,  # not a point on the curve
    ],
)
def test_bad_pubkeys_get_one_line_naming_the_input(query: str) -> None:
    with pytest.raises(UserError) as err:
        resolve_target("nostr", TargetKind.ACCOUNT, query)
    message = str(err.value)
    assert "is not a valid npub or hex public key" in message
    assert "\n" not in message


def test_hashtags_resolve_for_follow_and_search_alike() -> None:
    follow = resolve_target("nostr", TargetKind.ACCOUNT, "#Nostr")
    search = resolve_target("nostr", TargetKind.SEARCH, "#nostr")
    assert follow == search
    assert follow.key == "#nostr"
    with pytest.raises(UserError, match="write it with #"):
        resolve_target("nostr", TargetKind.SEARCH, "nostr news")
    with pytest.raises(UserError, match="is not a hashtag"):
        resolve_target("nostr", TargetKind.SEARCH, "#two words")


def test_a_marked_reply_is_a_reply_with_a_permalink() -> None:
    post = builder().build(decode_event(real("55ef")))
    assert post is not None
    assert post.is_reply
    assert not post.is_repost
    assert post.text == "Is today the opportunity?"
    assert post.uid == f"nostr:{real('55ef')['id']}"
    assert post.permalink.startswith("https://njump.me/nevent1")
    assert parse_event_id(post.permalink.rsplit("/", 1)[1]) == real("55ef")["id"]
    assert post.author.name.startswith("npub1")
    assert "…" in post.author.name
    assert post.created_at is not None
    assert post.created_at.timestamp() == 1688556088


def test_an_unmarked_e_tag_is_a_reply_in_the_old_positional_scheme() -> None:
    post = builder().build(decode_event(real("cd720b23")))
    assert post is not None
    assert post.is_reply
    assert "lillördag" in post.text
    assert "😎" in post.text


def test_a_repost_shows_the_verified_embedded_note_and_links_to_it() -> None:
    post = builder().build(decode_event(real("221e4c29")))
    assert post is not None
    assert post.is_repost
    assert not post.is_reply
    assert "There will always be a another opportunity" in post.text
    assert post.text.startswith("Reposted from npub1")
    inner_id = "29d57dd3bff6fde72141efcf55a09da0e4cb4a41785aa4f7c1411f8505af72b7"
    assert parse_event_id(post.permalink.rsplit("/", 1)[1]) == inner_id
    assert [m.url for m in post.media] == [
        "https://nostrcheck.me/media/public/nostrcheck.me_2617026328114791421688555844.webp"
    ]


def test_a_repost_with_a_tampered_embedded_note_does_not_show_its_text() -> None:
    raw = real("221e4c29")
    inner = json.loads(raw["content"])
    inner["content"] = "Send 1 BTC to this address"
    key = parse_secret_key(SECRET_HEX)
    outer = sign(key, kind=6, content=json.dumps(inner), tags=(("e", inner["id"]),), created_at=1)
    post = builder().build(outer)
    assert post is not None
    assert post.is_repost
    assert "BTC" not in post.text
    assert post.text == "Reposted a note."


def test_a_quote_is_marked_and_its_links_are_kept() -> None:
    post = builder().build(decode_event(real("2dc1a37f")))
    assert post is not None
    assert post.is_quote
    assert not post.is_reply
    assert post.links[0].endswith(".mov")
    assert post.media == ()  # a video link is not an image


def test_display_name_comes_from_kind_0_metadata() -> None:
    profiles = Profiles()
    posts = PostBuilder("nostr", profiles, "https://njump.me/{note}", "https://njump.me/{npub}")
    key = parse_secret_key(SECRET_HEX)
    meta = json.dumps({"name": "ada", "display_name": "Ada  L.", "picture": "https://x.test/a.png"})
    profiles.learn(sign(key, kind=0, content=meta, tags=(), created_at=10))
    profiles.learn(sign(key, kind=0, content='{"name": "old"}', tags=(), created_at=5))
    post = posts.build(sign(key, kind=1, content="hi", tags=(), created_at=20))
    assert post is not None
    assert post.author.name == "Ada L."
    assert post.author.avatar_url == "https://x.test/a.png"
    assert post.permalink.startswith("https://njump.me/note1")


@pytest.mark.parametrize(
    "frame",
    ["", "not json", "{}", "[]", "[1]", '["EVENT"]', '["OK","x","yes",""]', '["EOSE",5]'],
)
def test_malformed_relay_frames_are_skipped(frame: str) -> None:
    assert parse_message(frame) is None


def _context(tmp_path: Path, **config: Any) -> PluginContext:
    clock = SystemClock()
    return PluginContext("nostr", config, HealthBook(clock), clock, False, str(tmp_path))


@pytest.mark.parametrize(
    "relays",
    [
        '["ws://127.0.0.1:7001", "wss://relay.example.com"]',
        "ws://127.0.0.1:7001, wss://relay.example.com",
        ["ws://127.0.0.1:7001", "wss://relay.example.com", "ws://127.0.0.1:7001"],
    ],
)
def test_relays_come_as_a_list_from_toml_or_a_string_from_env(tmp_path: Path, relays: Any) -> None:
    network = create(_context(tmp_path, relays=relays))
    source = network.source
    assert source is not None
    assert source._pool.relays == ["ws://127.0.0.1:7001", "wss://relay.example.com"]  # type: ignore[attr-defined]
    assert network.publisher is None, "no secret key, no publishing"


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("relays", "https://relay.example.com", "is not a relay URL"),
        ("relays", '["ws://a", ', "is not a valid JSON list"),
        ("web_url", "https://njump.me/{event}", "unknown placeholder {event}"),
        ("timeout_s", "0", "timeout_s"),
        ("relay", "ws://x", "relay"),
    ],
)
def test_bad_config_names_the_option(tmp_path: Path, option: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match="nostr") as err:
        create(_context(tmp_path, **{option: value}))
    assert message in str(err.value)


BAD_NSEC = "nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe6"  # checksum


@pytest.mark.parametrize("secret", [BAD_NSEC, "ab" * 31, "0" * 64])
def test_a_bad_secret_key_is_refused_without_echoing_it(tmp_path: Path, secret: str) -> None:
    with pytest.raises(ConfigError) as err:
        create(_context(tmp_path, secret_key=secret))
    assert "secret_key" in str(err.value)
    assert secret not in str(err.value)


def test_the_secret_key_never_shows_in_a_repr(tmp_path: Path) -> None:
    from plugins.nostr.settings import NostrSettings

    settings = NostrSettings.model_validate({"secret_key": SECRET_HEX})
    assert SECRET_HEX not in repr(settings)
    assert SECRET_HEX not in str(settings.model_dump())
    network = create(_context(tmp_path, secret_key=NIP19["nsec"][0][0]))
    assert network.publisher is not None


def test_an_event_must_really_match_the_target_whatever_the_relay_says() -> None:
    from plugins.nostr.targets import matches

    tagged = decode_event(real("221e4c29"))  # a repost; its embedded note has the tags
    note = decode_event(real("55ef"))
    account = resolve_target("nostr", TargetKind.ACCOUNT, note.pubkey)
    assert matches(account, note)
    assert not matches(account, decode_event(real("cd720b23"))), "another author"
    inner = decode_event(json.loads(tagged.content))
    assert matches(resolve_target("nostr", TargetKind.SEARCH, "#Bitcoin"), inner)
    assert not matches(resolve_target("nostr", TargetKind.SEARCH, "#python"), inner)
    assert not matches(resolve_target("nostr", TargetKind.SEARCH, "#bitcoin"), note)
