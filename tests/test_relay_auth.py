"""The relay's authorization: the authorize hook (sync and async, once per topic
and action), TokenAuth, JWTAuth (PyJWT), origins, and the codes of each refusal."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import jwt
import pytest

from fastws import connect
from fastws.exceptions import ConnectionClosed, InvalidStatus
from fastws.handshake import Headers, Request
from fastws.relay import Relay, serve_relay
from fastws.relay.auth import TOKEN_EXPIRED, Denied, JWTAuth, TokenAuth, request_token, topic_allowed

from .support.asyncio import async_test

SECRET = "a-test-secret-of-at-least-32-bytes!!"
STEP = 10.0


def token(secret: str = SECRET, *, exp: float | None = None, **claims) -> str:
    payload = {"sub": "alice", "exp": int(time.time() + 3600) if exp is None else exp, **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


async def receive(ws, count: int = 1) -> list:
    return [await asyncio.wait_for(ws.recv(), STEP) for _ in range(count)]


async def closed_with(ws) -> ConnectionClosed:
    with pytest.raises(ConnectionClosed) as raised:
        while True:
            await asyncio.wait_for(ws.recv(), STEP)
    return raised.value


async def refused(url: str, **kwargs) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as raised:
        await connect(url, **kwargs)
    return raised.value


def bearer(value: str) -> dict:
    return {"extra_headers": {"Authorization": f"Bearer {value}"}}


# -- the policies, sans I/O ----------------------------------------------------------


def request(path: str = "/t", headers=()) -> Request:
    return Request("GET", path, Headers(list(headers)))


def test_request_token_from_header_or_query():
    assert request_token(request("/t", [("Authorization", "Bearer abc")])) == "abc"
    assert request_token(request("/t", [("Authorization", "bearer  abc ")])) == "abc"
    assert request_token(request("/t?x=1&token=a%2Bb")) == "a+b"
    assert request_token(request("/t?x=1")) is None and request_token(request("/")) is None
    for bad in (
        request("/t", [("Authorization", "Basic YTpi")]),
        request("/t", [("Authorization", "Bearer")]),
        request("/t", [("Authorization", "Bearer a"), ("Authorization", "Bearer b")]),
        request("/t?token=a&token=b"),
        request("/t?token="),
    ):
        with pytest.raises(Denied) as raised:
            request_token(bad)
        assert raised.value.status == 401


def test_token_auth_accepts_each_of_its_tokens_only():
    auth = TokenAuth(["one", "two"])
    for good in ("one", "two"):
        assert auth(request(f"/t?token={good}"), "t", "publish") is True
    for bad, reason in (("/t?token=three", "invalid token"), ("/t?token=on", "invalid token"), ("/t", "missing token")):
        with pytest.raises(Denied) as raised:
            auth(request(bad), "t", "subscribe")
        assert (raised.value.status, raised.value.reason) == (401, reason)
    with pytest.raises(ValueError):
        TokenAuth([])
    with pytest.raises(ValueError):
        TokenAuth("")


def test_topic_patterns():
    assert topic_allowed(["a", "news.*"], "news.sport") and topic_allowed(["*"], "anything")
    assert not topic_allowed(["a", "news.*"], "news") and not topic_allowed(["a"], "ab")
    assert not topic_allowed([], "a")


def test_jwt_auth_checks_signature_expiry_and_claims():
    auth = JWTAuth(SECRET)
    good = token(subscribe=["prices", "news.*"], publish="chat")
    req = request(f"/?token={good}")
    assert auth(req, None, "connect") and auth(req, "news.x", "subscribe") and auth(req, "chat", "publish")
    for topic, action in (("chat", "subscribe"), ("prices", "publish"), ("newsx", "subscribe")):
        with pytest.raises(Denied) as raised:
            auth(req, topic, action)
        assert raised.value.status == 403 and raised.value.close_code == 1008
        assert raised.value.reason == f"not allowed to {action} on {topic!r}"
    header, payload, signature = good.split(".")
    tampered_payload = jwt.utils.base64url_encode(
        json.dumps({"sub": "alice", "exp": int(time.time() + 3600), "publish": ["*"]}).encode()
    ).decode()
    cases = {
        "wrong secret": token("another-secret-of-at-least-32-bytes!!", subscribe=["*"]),
        "tampered": f"{header}.{tampered_payload}.{signature}",
        "not a jwt": "abc",
        "none algorithm": jwt.encode({"exp": int(time.time() + 60), "subscribe": ["*"]}, None, algorithm="none"),
        "no exp": jwt.encode({"subscribe": ["*"]}, SECRET, algorithm="HS256"),
    }
    for name, value in cases.items():
        with pytest.raises(Denied) as raised:
            auth(request(f"/?token={value}"), None, "connect")
        assert raised.value.status == 401 and raised.value.reason.startswith("invalid token"), name
    with pytest.raises(Denied) as raised:
        auth(request(f"/?token={token(exp=time.time() - 10)}"), None, "connect")
    assert (raised.value.status, raised.value.close_code, raised.value.reason) == (401, 4001, "token expired")
    expires = int(time.time() + 100)
    assert auth.expires_at(request(f"/?token={token(exp=expires)}")) == expires
    with pytest.raises(ValueError):
        JWTAuth(SECRET, algorithms=["RS256"])


# -- through the relay ------------------------------------------------------------


@async_test
async def test_token_auth_at_the_handshake():
    async with serve_relay(relay=Relay(), authorize=TokenAuth("s3cret")) as server:
        base = f"ws://127.0.0.1:{server.port}"
        assert (await refused(base + "/t")).status == 401  # missing
        assert (await refused(base + "/t?token=wrong")).status == 401
        rejection = await refused(base + "/t", **bearer("s3cre"))
        assert rejection.status == 401 and rejection.response.headers["WWW-Authenticate"] == "Bearer"
        async with connect(base + "/t?token=s3cret") as sub, connect(base + "/t", **bearer("s3cret")) as pub:
            await pub.send("allowed")
            assert await receive(sub) == ["allowed"]
        with pytest.raises(urllib.error.HTTPError) as raised:  # /stats needs the token too
            await asyncio.to_thread(urllib.request.urlopen, base.replace("ws", "http") + "/stats", timeout=STEP)
        assert raised.value.code == 401
        with await asyncio.to_thread(
            urllib.request.urlopen, base.replace("ws", "http") + "/stats?token=s3cret", timeout=STEP
        ) as response:
            assert json.loads(response.read())["messages_in"] == 1


@async_test
async def test_jwt_claims_decide_per_topic_and_action():
    relay = Relay()
    async with serve_relay(relay=relay, authorize=JWTAuth(SECRET)) as server:
        base = f"ws://127.0.0.1:{server.port}"
        reader = token(subscribe=["prices"])
        writer = token(subscribe=["prices"], publish=["prices"])
        # Subscribing to a topic outside the claims: 403 at the handshake.
        assert (await refused(f"{base}/news?token={reader}")).status == 403
        # Expired and tampered tokens: 401.
        assert (await refused(f"{base}/prices?token={token(exp=time.time() - 5, subscribe=['*'])}")).status == 401
        assert (await refused(f"{base}/prices?token={reader[:-2]}xx")).status == 401
        async with connect(f"{base}/prices?token={reader}") as sub, connect(f"{base}/prices", **bearer(writer)) as pub:
            await pub.send("tick")
            assert await receive(sub) == ["tick"]
            # Publishing without the claim: closed with 1008 and the reason.
            await sub.send("not mine to send")
            closed = await closed_with(sub)
            assert (closed.code, closed.reason) == (1008, "not allowed to publish on 'prices'")
        assert relay.stats.messages_in == 1
        # The control connection: subscribe and publish checked per topic.
        async with connect(f"{base}/?token={writer}") as control:
            await control.send(json.dumps({"subscribe": "prices"}))
            await control.send(json.dumps({"publish": "prices", "data": "via control"}))
            async with connect(f"{base}/prices?token={reader}") as sub:
                while relay.topics().get("prices") != 2:
                    await asyncio.sleep(0.01)
                await control.send(json.dumps({"publish": "prices", "data": "second"}))
                assert await receive(sub) == ["second"]
            await control.send(json.dumps({"subscribe": ["prices", "secret"]}))
            closed = await closed_with(control)
            assert (closed.code, closed.reason) == (1008, "not allowed to subscribe on 'secret'")
        assert relay.topics() == {}


@async_test
async def test_an_expired_token_closes_the_connection_with_4001():
    async with serve_relay(relay=Relay(), authorize=JWTAuth(SECRET)) as server:
        url = f"ws://127.0.0.1:{server.port}/t?token={token(exp=time.time() + 1.5, subscribe=['t'])}"
        started = time.monotonic()
        async with connect(url) as ws:
            closed = await closed_with(ws)
        assert (closed.code, closed.reason) == (TOKEN_EXPIRED, "token expired")
        assert 0.5 < time.monotonic() - started < STEP


@pytest.mark.parametrize("asynchronous", [False, True])
@async_test
async def test_authorize_hook_runs_once_per_topic_and_action(asynchronous):
    calls: list = []
    release = asyncio.Event()

    def decide(request, topic, action):
        calls.append((topic, action))
        return topic != "forbidden" and "deny" not in request.path

    async def decide_later(request, topic, action):
        if action == "publish":
            await release.wait()  # messages received meanwhile wait, in order
        return decide(request, topic, action)

    relay = Relay()
    async with serve_relay(relay=relay, authorize=decide_later if asynchronous else decide, echo=True) as server:
        base = f"ws://127.0.0.1:{server.port}"
        assert (await refused(base + "/t?deny")).status == 403
        assert (await refused(base + "/forbidden")).status == 403
        calls.clear()
        async with connect(base + "/t") as ws:
            for n in range(5):
                await ws.send(f"m{n}")
            release.set()
            assert await receive(ws, 5) == [f"m{n}" for n in range(5)]
        assert calls == [(None, "connect"), ("t", "subscribe"), ("t", "publish")]
        calls.clear()
        async with connect(base + "/") as control:
            for n in range(3):
                await control.send(json.dumps({"subscribe": ["a", "b"], "publish": "a", "data": f"c{n}"}))
            assert await receive(control, 3) == ["c0", "c1", "c2"]
            await control.send(json.dumps({"publish": "forbidden", "data": "x"}))
            closed = await closed_with(control)
            assert (closed.code, closed.reason) == (1008, "not allowed to publish on 'forbidden'")
        assert calls == [
            (None, "connect"),
            ("a", "subscribe"),
            ("b", "subscribe"),
            ("a", "publish"),
            ("forbidden", "publish"),
        ]


@async_test
async def test_a_failing_hook_denies_and_denied_sets_codes():
    def hook(request, topic, action):
        if topic == "boom":
            raise RuntimeError("bug in the hook")
        if topic == "custom":
            raise Denied("come back later", status=429, close_code=4029)
        return True

    async with serve_relay(relay=Relay(), authorize=hook) as server:
        base = f"ws://127.0.0.1:{server.port}"
        assert (await refused(base + "/boom")).status == 500
        assert (await refused(base + "/custom")).status == 429
        async with connect(base + "/") as control:
            await control.send(json.dumps({"subscribe": "custom"}))
            closed = await closed_with(control)
            assert (closed.code, closed.reason) == (4029, "come back later")
        async with connect(base + "/") as control:
            await control.send(json.dumps({"publish": "boom", "data": "x"}))
            assert (await closed_with(control)).code == 1011


@async_test
async def test_origins_allow_list():
    async with serve_relay(relay=Relay(), origins=["https://app.example"]) as server:
        url = f"ws://127.0.0.1:{server.port}/t"
        assert (await refused(url, origin="https://evil.example")).status == 403
        assert (await refused(url)).status == 403  # no Origin: not in the list
        async with connect(url, origin="https://app.example") as ws:
            await ws.ping()
