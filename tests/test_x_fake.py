"""The fake X API itself: it must answer as the recordings say X answered.

If the fake drifted from X, every other X test would prove nothing, so the
recorded requests are replayed against it and compared with what X sent, and its
OAuth 1.0a verifier is checked against the worked example in RFC 5849.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from authlib.oauth1 import ClientAuth

from tests.fakes.x_server import (
    ACCESS_TOKEN,
    ACCESS_TOKEN_SECRET,
    BEARER,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    XServer,
    hmac_sha1_signature,
    load_cassettes,
    serving,
    signature_base_string,
)


@pytest_asyncio.fixture
async def x_server() -> AsyncIterator[XServer]:
    async with serving() as server:
        yield server


def _user_signature(method: str, url: str) -> str:
    signer = ClientAuth(CONSUMER_KEY, CONSUMER_SECRET, ACCESS_TOKEN, ACCESS_TOKEN_SECRET)
    _, headers, _ = signer.sign(method, url, {}, b"")
    return str(headers["Authorization"])


REPLAYED = [
    "test_client_get_user",
    "test_client_get_me",
    "test_client_get_users_tweets",
    "test_asyncclient_get_users_tweets",
    "test_asyncclient_search_recent_tweets",
]


@pytest.mark.parametrize("cassette", REPLAYED)
async def test_recorded_requests_get_the_recorded_answers(x_server: XServer, cassette: str) -> None:
    [recorded] = [i for i in load_cassettes() if i["cassette"] == cassette]
    path = recorded["request"]["uri"].removeprefix("https://api.twitter.com")
    url = x_server.url + path
    auth = _user_signature("GET", url) if path == "/2/users/me" else f"Bearer {BEARER}"
    async with httpx.AsyncClient() as client:
        response = await client.get(url, headers={"Authorization": auth})
    want = json.loads(recorded["body_text"])
    got = response.json()
    assert response.status_code == recorded["response"]["status"]["code"]
    assert got["data"] == want["data"]
    for key in ("result_count", "newest_id", "oldest_id"):
        assert got.get("meta", {}).get(key) == want.get("meta", {}).get(key)
    headers = {k.lower(): v[0] for k, v in recorded["response"]["headers"].items()}
    for name in ("api-version", "x-access-level", "x-rate-limit-limit"):
        assert response.headers.get(name) == headers.get(name), name
    assert response.headers["content-encoding"] == "gzip"


async def test_recorded_post_and_delete_have_the_recorded_shape(x_server: XServer) -> None:
    [create, delete] = [
        i for i in load_cassettes() if i["cassette"] == "test_client_create_and_delete_tweet"
    ]
    url = f"{x_server.url}/2/tweets"
    async with httpx.AsyncClient() as client:
        made = await client.post(
            url,
            content=create["request"]["body"],
            headers={
                "Authorization": _user_signature("POST", url),
                "Content-Type": "application/json",
            },
        )
        assert made.status_code == create["response"]["status"]["code"] == 201
        data = made.json()["data"]
        assert set(data) == set(json.loads(create["body_text"])["data"]) == {"id", "text"}
        assert data["text"] == "Test Tweet"
        assert made.headers["location"].endswith(f"/2/tweets/{data['id']}")
        gone_url = f"{x_server.url}/2/tweets/{data['id']}"
        gone = await client.delete(
            gone_url, headers={"Authorization": _user_signature("DELETE", gone_url)}
        )
    assert gone.json() == json.loads(delete["body_text"]) == {"data": {"deleted": True}}


def test_the_signature_check_reproduces_rfc_5849s_example() -> None:
    # RFC 5849 section 1.2: the photos.example.net request and its signature.
    params = [
        ("file", "vacation.jpg"),
        ("size", "original"),
        ("oauth_consumer_key", "dpf43f3p2l4k3l03"),
        ("oauth_token", "nnch734d00sl2jdk"),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", "1191242096"),
        ("oauth_nonce", "kllo9940pd9333jh"),
        ("oauth_version", "1.0"),
    ]
    base = signature_base_string("GET", "http://photos.example.net/photos", params)
    assert base.startswith("GET&http%3A%2F%2Fphotos.example.net%2Fphotos&file%3Dvacation.jpg")
    signature = hmac_sha1_signature(base, "kd94hf93k423kf44", "pfkkdhi9sl3r4s00")
    assert signature == "tR3+Ty81lMeYAr/Fid0kMTYa/WM="


async def test_tampered_or_replayed_signatures_are_refused(x_server: XServer) -> None:
    url = f"{x_server.url}/2/users/me"
    good = _user_signature("GET", url)
    async with httpx.AsyncClient() as client:
        assert (await client.get(url, headers={"Authorization": good})).status_code == 200
        replayed = await client.get(url, headers={"Authorization": good})
        other_path = _user_signature("GET", f"{x_server.url}/2/users/by/username/x")
        moved = await client.get(url, headers={"Authorization": other_path})
        unsigned = await client.get(url)
        app_only = await client.get(url, headers={"Authorization": f"Bearer {BEARER}"})
    assert replayed.status_code == 401
    assert moved.status_code == 401
    assert unsigned.status_code == 401
    assert app_only.status_code == 403
    assert "Application-Only is forbidden" in app_only.json()["detail"]


async def test_requests_that_break_the_published_description_get_xs_400(
    x_server: XServer,
) -> None:
    auth = {"Authorization": f"Bearer {BEARER}"}
    async with httpx.AsyncClient(base_url=x_server.url, headers=auth) as client:
        too_many = await client.get("/2/users/783214/tweets", params={"max_results": "200"})
        unknown = await client.get("/2/users/783214/tweets", params={"tweet.fields": "colour"})
        no_query = await client.get("/2/tweets/search/recent")
        bad_name = await client.get("/2/users/by/username/no-dashes")
    for answer in (too_many, unknown, no_query, bad_name):
        assert answer.status_code == 400
        assert answer.json()["type"] == "https://api.x.com/2/problems/invalid-request"
    assert "max_results" in too_many.json()["errors"][0]["message"]
