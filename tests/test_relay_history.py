"""The relay's history in one process: offsets, epochs, envelopes, recovery with
``since`` (topic URLs and the control protocol), "history gone", bad input, and
subscribers that disconnect at random and recover."""

from __future__ import annotations

import asyncio
import base64
import json
import random

import pytest

import fastws.relay
import fastws.relay.core
from fastws import connect
from fastws.exceptions import ConnectionClosed, InvalidStatus
from fastws.relay import Relay, serve_relay

from .support.asyncio import async_test

STEP = 10.0


async def receive(ws, count: int = 1) -> list:
    return [await asyncio.wait_for(ws.recv(), STEP) for _ in range(count)]


async def receive_json(ws, count: int = 1) -> list:
    return [json.loads(m) for m in await receive(ws, count)]


async def wait_for(predicate) -> None:
    async def poll():
        while not predicate():
            await asyncio.sleep(0.002)

    await asyncio.wait_for(poll(), STEP)


@async_test
async def test_envelopes_carry_offsets_and_the_subscribed_notice_the_position():
    relay = Relay(history=100)
    async with serve_relay(relay=relay) as server:
        base = f"ws://127.0.0.1:{server.port}"
        async with connect(base + "/?envelope=1") as control, connect(base + "/prices") as raw:
            await control.send(json.dumps({"subscribe": "prices"}))
            [notice] = await receive_json(control)
            epoch = notice["epoch"]
            assert notice == {"subscribed": "prices", "epoch": epoch, "offset": 0} and len(epoch) == 12
            await wait_for(lambda: relay.topics() == {"prices": 2})
            await raw.send("one")
            await raw.send(b"\x00two")
            await control.send(json.dumps({"publish": "prices", "data": "three"}))
            assert await receive_json(control, 2) == [
                {"topic": "prices", "offset": 1, "data": "one"},
                {"topic": "prices", "offset": 2, "data_b64": base64.b64encode(b"\x00two").decode()},
            ]
            assert await receive(raw) == ["three"]  # raw URLs keep raw deliveries
            await control.send(json.dumps({"subscribe": "news"}))
            assert await receive_json(control) == [
                {"subscribed": "news", "epoch": relay._history["news"].epoch, "offset": 0}
            ]
            assert relay._history["news"].epoch != epoch  # one epoch per topic


@async_test
async def test_a_topic_url_recovers_with_since_then_goes_live():
    relay = Relay(history=100)
    async with serve_relay(relay=relay) as server:
        url = f"ws://127.0.0.1:{server.port}/t"
        async with connect(url) as publisher:
            async with connect(url) as sub:
                for n in range(1, 6):
                    await publisher.send(f"m{n}")
                assert await receive(sub, 5) == [f"m{n}" for n in range(1, 6)]
            epoch = relay._history["t"].epoch
            for n in range(6, 9):  # missed while away
                await publisher.send(f"m{n}")
            await wait_for(lambda: relay._history["t"].offset == 8)
            async with connect(f"{url}?since=5&epoch={epoch}") as sub:
                [notice] = await receive_json(sub)
                assert notice == {"subscribed": "t", "epoch": epoch, "offset": 8, "recovered": True}
                assert await receive(sub, 3) == ["m6", "m7", "m8"]
                await publisher.send("m9")
                assert await receive(sub) == ["m9"]
            async with connect(f"{url}?since=9&epoch={epoch}") as sub:  # nothing missed
                assert await receive_json(sub) == [{"subscribed": "t", "epoch": epoch, "offset": 9, "recovered": True}]
                await publisher.send("m10")
                assert await receive(sub) == ["m10"]
            async with connect(f"{url}?since=0") as sub:  # everything the history holds, in the current epoch
                assert (await receive_json(sub))[0]["recovered"] is True
                assert await receive(sub, 10) == [f"m{n}" for n in range(1, 11)]
        assert relay.stats.recovered == 3 + 10


@async_test
async def test_history_gone_epoch_changed_and_offsets_ahead_are_told():
    relay = Relay(history=5)
    async with serve_relay(relay=relay) as server:
        url = f"ws://127.0.0.1:{server.port}/t"
        for n in range(1, 21):
            relay.publish("t", f"m{n}")
        epoch = relay._history["t"].epoch
        cases = [
            (f"since=3&epoch={epoch}", "history gone"),
            ("since=14", "history gone"),  # one before the oldest kept (16)
            ("since=7&epoch=another", "epoch changed"),
            (f"since=21&epoch={epoch}", "offset ahead of history"),
        ]
        for query, reason in cases:
            async with connect(f"{url}?{query}") as sub:
                assert await receive_json(sub) == [
                    {"subscribed": "t", "epoch": epoch, "offset": 20, "recovered": False, "reason": reason}
                ]
        async with connect(f"{url}?since=15&epoch={epoch}") as sub:  # the oldest kept is 16: recovered
            assert (await receive_json(sub))[0]["recovered"] is True
            assert await receive(sub, 5) == [f"m{n}" for n in range(16, 21)]
        async with connect(f"{url}?since=3&epoch={epoch}") as sub:
            assert (await receive_json(sub))[0]["recovered"] is False
            relay.publish("t", "live")  # nothing replayed: live messages resume after offset 20
            assert await receive(sub) == ["live"]
    # A relay without history tells so.
    async with serve_relay(relay=Relay()) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/?envelope=1") as control:
            await control.send(json.dumps({"subscribe": "t", "since": 4}))
            assert await receive_json(control) == [
                {"subscribed": "t", "epoch": None, "offset": 0, "recovered": False, "reason": "no history"}
            ]


@async_test
async def test_control_protocol_recovery_in_envelopes():
    relay = Relay(history=100)
    async with serve_relay(relay=relay) as server:
        for n in range(1, 11):
            relay.publish("a", f"a{n}")
        epoch = relay._history["a"].epoch
        async with connect(f"ws://127.0.0.1:{server.port}/?envelope=1") as control:
            await control.send(json.dumps({"subscribe": "a", "since": 7, "epoch": epoch}))
            got = await receive_json(control, 4)
            assert got[0] == {"subscribed": "a", "epoch": epoch, "offset": 10, "recovered": True}
            assert got[1:] == [{"topic": "a", "offset": n, "data": f"a{n}"} for n in (8, 9, 10)]


def test_history_is_bounded_by_age(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(fastws.relay.core.time, "monotonic", lambda: now[0])
    relay = Relay(history=100, history_ttl=60)
    for n in range(1, 4):
        relay.publish("t", f"m{n}")
        now[0] += 25
    # m1 is 75 s old, m2 50, m3 25: m1 expired.
    recovery = relay.recovery("t", 1, None)
    assert recovery.recovered and [p.message for p in recovery.missed] == ["m2", "m3"]
    assert relay.recovery("t", 0, None).reason == "history gone"
    epoch = relay._history["t"].epoch
    now[0] += 100
    relay.expire_history()  # no entries left, no subscribers: the history goes
    assert relay._history == {}
    relay.publish("t", "again")
    assert relay._history["t"].epoch != epoch and relay._history["t"].offset == 1
    assert relay.recovery("t", 3, epoch).reason == "epoch changed"
    assert relay.stats.snapshot()["history"] == {"topics": 1, "entries": 1}
    with pytest.raises(ValueError):
        Relay(history=-1)


@pytest.mark.parametrize(
    "query",
    ["since=abc", "since=-1", "since=1.5", "since=1&since=2", "epoch=e", "since=99999999999999999999", "envelope=x"],
)
@async_test
async def test_malformed_since_is_refused_at_the_handshake(query):
    async with serve_relay(relay=Relay(history=10)) as server:
        with pytest.raises(InvalidStatus) as raised:
            await connect(f"ws://127.0.0.1:{server.port}/t?{query}")
        assert raised.value.status == 400


@pytest.mark.parametrize(
    "command, reason",
    [
        ({"subscribe": "t", "since": "3"}, "since: expected an offset"),
        ({"subscribe": "t", "since": -1}, "since: expected an offset"),
        ({"subscribe": "t", "since": True}, "since: expected an offset"),
        ({"subscribe": "t", "since": 1, "epoch": 5}, "epoch: expected a string"),
        ({"subscribe": "t", "epoch": "e"}, "epoch without since"),
        ({"subscribe": ["a", "b"], "since": 1}, "since: subscribe to one topic at a time"),
        ({"publish": "t", "data": "x", "since": 1}, "since: subscribe to one topic at a time"),
    ],
)
@async_test
async def test_malformed_since_in_control_messages_closes_with_1008(command, reason):
    async with serve_relay(relay=Relay(history=10)) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/?envelope=1") as control:
            await control.send(json.dumps(command))
            with pytest.raises(ConnectionClosed) as raised:
                await receive(control)
            assert raised.value.code == 1008 and raised.value.reason.startswith(f"bad control message: {reason}")


@async_test
async def test_since_on_a_raw_control_connection_asks_for_envelopes():
    async with serve_relay(relay=Relay(history=10)) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/") as control:
            await control.send(json.dumps({"subscribe": "t", "since": 1}))
            with pytest.raises(ConnectionClosed) as raised:
                await receive(control)
            assert raised.value.reason == "bad control message: since needs envelopes: connect to /?envelope=1"


@async_test
async def test_control_messages_over_the_size_limit_close_with_1009():
    async with serve_relay(relay=Relay(history=10), max_message_size=1024) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/?envelope=1") as control:
            await control.send(json.dumps({"publish": "t", "data": "x" * 2000}))
            with pytest.raises(ConnectionClosed) as raised:
                await receive(control)
            assert raised.value.code == 1009


# -- subscribers that come and go -----------------------------------------------------


async def churn(seed: int, subscribers: int, messages: int, history: int) -> dict:
    """One publisher; subscribers (half envelopes, half raw URLs with since)
    that read a random number of messages, disconnect, sometimes stay away
    long enough to miss more than the history, and come back with since.
    Each must see every message once and in order, or be told of the gap.

    The publisher stays at most half the history ahead of every subscriber that
    is not away on purpose, so one that comes straight back must recover: what
    a test can count on, however slow the machine."""
    rng = random.Random(seed)
    relay = Relay(history=history)
    summary = {"recovered": 0, "gaps": 0, "reconnects": 0}
    lead = history // 2
    positions = dict.fromkeys(range(subscribers), 0)  # the last offset seen by those not away on purpose
    async with serve_relay(relay=relay) as server:
        base = f"ws://127.0.0.1:{server.port}"

        def published() -> int:
            history_ = relay._history.get("t")
            return history_.offset if history_ is not None else 0

        async def subscriber(index: int) -> None:
            envelope = index % 2 == 0
            seen: list[int] = []  # offsets received, in order of arrival
            told: list[tuple[int, int]] = []  # gaps told: (since, resumed after)
            epoch, last = None, None  # the position: the last offset seen
            while True:
                if envelope:
                    url = f"{base}/?envelope=1"
                elif last is None:
                    url = f"{base}/t"
                else:
                    url = f"{base}/t?since={last}&epoch={epoch}"
                async with connect(url) as ws:
                    if envelope:
                        command = {"subscribe": "t"}
                        if last is not None:
                            command.update(since=last, epoch=epoch)
                        await ws.send(json.dumps(command))
                    if envelope or last is not None:
                        notice = json.loads(await asyncio.wait_for(ws.recv(), STEP))
                        assert notice["subscribed"] == "t" and notice["epoch"] is not None
                        epoch = notice["epoch"]
                        if last is None:
                            last = notice["offset"]  # live messages follow it
                        elif notice["recovered"]:
                            summary["recovered"] += 1
                        else:
                            # Only one away on purpose may miss more than the history.
                            assert index not in positions, (index, last, notice)
                            assert notice["reason"] == "history gone" and notice["offset"] > last
                            told.append((last, notice["offset"]))
                            summary["gaps"] += 1
                            last = notice["offset"]
                        positions[index] = last
                    budget = rng.randint(1, messages // 4)
                    while budget and last != messages:
                        message = await asyncio.wait_for(ws.recv(), STEP)
                        if envelope:
                            data = json.loads(message)
                            offset = data["offset"]
                            assert data == {"topic": "t", "offset": offset, "data": str(offset)}
                        else:
                            offset = int(message)
                        # Every message once, in order: the next offset, or a gap it was told of.
                        assert last is None or offset == last + 1, (index, last, offset)
                        seen.append(offset)
                        last = positions[index] = offset
                        if epoch is None:
                            epoch = relay._history["t"].epoch
                        budget -= 1
                if last == messages:
                    assert seen and seen == sorted(set(seen))
                    missing = set(range(seen[0], messages + 1)) - set(seen)
                    for since, resumed in told:
                        missing -= set(range(since + 1, resumed + 1))
                    assert not missing, (index, sorted(missing)[:10])
                    del positions[index]
                    return
                summary["reconnects"] += 1
                if rng.random() < 0.2:  # away long enough to miss more than the history holds
                    del positions[index]
                    target = min(published() + history + 1, messages)
                    await wait_for(lambda target=target: published() >= target)

        tasks = [asyncio.ensure_future(subscriber(i)) for i in range(subscribers)]
        await wait_for(lambda: relay.topics().get("t", 0) == subscribers)
        for n in range(1, messages + 1):
            if any(n - position > lead for position in positions.values()):
                await wait_for(lambda n=n: all(n - position <= lead for position in positions.values()))
            relay.publish("t", str(n))
            if n % 5 == 0:
                await asyncio.sleep(0.001)  # let subscribers read, disconnect and come back meanwhile
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return summary


@async_test
async def test_subscribers_that_disconnect_at_random_recover_or_are_told():
    summary = await churn(seed=1, subscribers=8, messages=600, history=40)
    assert summary["recovered"] > 0 and summary["gaps"] > 0 and summary["reconnects"] > 10


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
@async_test
async def test_churn_soak(seed):
    summary = await churn(seed=seed, subscribers=40, messages=5000, history=100)
    assert summary["recovered"] > 0


# -- gaps told to raw subscribers: closed with GAP_CLOSE_CODE ------------------------


async def read_until_closed(ws) -> tuple[list, int]:
    """Everything ``ws`` receives until it is closed, and the close code."""
    got: list = []
    try:
        while True:
            got.append(await asyncio.wait_for(ws.recv(), STEP))
    except ConnectionClosed as closed:
        return got, closed.code


@async_test
async def test_a_gap_closes_raw_subscribers_with_since_with_4002():
    relay = Relay(history=100)
    async with serve_relay(relay=relay) as server:
        url = f"ws://127.0.0.1:{server.port}/t"
        for n in range(1, 4):
            relay.publish("t", f"m{n}")
        history = relay._history["t"]
        epoch = history.epoch
        counting = await connect(f"{url}?since=3&epoch={epoch}")  # counts offsets
        plain = await connect(url)  # does not: not told
        async with connect(url + "?envelope=1") as envelope:
            assert (await receive_json(counting))[0]["recovered"] is True
            await receive_json(envelope)
            await wait_for(lambda: relay.topics() == {"t": 3})
            relay.publish("t", "m4")
            # Messages 5 and 6 are lost, and the history with them (as when Redis loses its data).
            history.offset += 2
            history.entries.clear()
            relay.gap("t", epoch, 6, "history gone")
            relay.publish("t", "m7")
            got, code = await read_until_closed(counting)
            assert got == ["m4"] and code == fastws.relay.GAP_CLOSE_CODE == 4002  # nothing after the gap
            assert await receive(plain, 2) == ["m4", "m7"]
            assert await receive_json(envelope, 3) == [
                {"topic": "t", "offset": 4, "data": "m4"},
                {"gap": "t", "epoch": epoch, "offset": 6, "reason": "history gone"},
                {"topic": "t", "offset": 7, "data": "m7"},
            ]
        assert relay.stats.closed_gap == 1 and relay.stats.gaps == 1
        # It reconnects with the offset it counted (3 + 1): told what was lost, then live.
        async with connect(f"{url}?since=4&epoch={epoch}") as again:
            assert await receive_json(again) == [
                {"subscribed": "t", "epoch": epoch, "offset": 7, "recovered": False, "reason": "history gone"}
            ]
            relay.publish("t", "m8")
            assert await receive(again) == ["m8"]
        await plain.close()


@pytest.mark.parametrize("policy", ["drop-oldest", "drop-newest"])
@async_test
async def test_a_raw_subscriber_with_since_is_closed_not_dropped_and_recovers(policy):
    """Under a drop policy a full backlog would make a counting raw subscriber
    skip messages unknowingly: it is closed with 4002 instead, and recovers
    everything from the history."""
    total, size = 200, 65536
    relay = Relay(history=total, max_backlog=8, policy=policy)
    async with serve_relay(relay=relay, write_limit=65536) as server:
        url = f"ws://127.0.0.1:{server.port}/t"
        slow = await connect(f"{url}?since=0", max_queue=1, compression=None, max_message_size=None)
        plain = await connect(url, max_queue=1, compression=None, max_message_size=None)  # also stalled
        await wait_for(lambda: relay.topics() == {"t": 2})
        noise = random.Random(0).randbytes(size)
        for n in range(1, total + 1):
            relay.publish("t", n.to_bytes(4, "big") + noise)
            await asyncio.sleep(0)  # one message per loop iteration: the buffers fill, then the backlog
        assert relay.stats.closed_gap == 1 and relay.stats.dropped > 0  # plain had messages dropped
        got, code = await read_until_closed(slow)
        assert code == 4002
        notice = json.loads(got[0])
        assert notice == {"subscribed": "t", "epoch": relay._history["t"].epoch, "offset": 0, "recovered": True}
        numbers = [int.from_bytes(m[:4], "big") for m in got[1:]]
        assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) < total  # counted, no hole
        async with connect(f"{url}?since={len(numbers)}&epoch={notice['epoch']}", max_message_size=None) as again:
            assert (await receive_json(again))[0]["recovered"] is True
            rest = [int.from_bytes(m[:4], "big") for m in await receive(again, total - len(numbers))]
            assert numbers + rest == list(range(1, total + 1))  # every message once, in order
        plain.transport.abort()
