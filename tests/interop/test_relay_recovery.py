"""History and recovery through Redis Streams, with a real redis-server and real
relay processes: shared by processes, kept across a relay killed and restarted,
buffered while Redis is down (bounded, counted), gaps told when Redis lost them,
and subscribers that disconnect at random and recover.

redis-server comes from tests/interop/install-peers.sh; missing, these tests fail.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sys
import time

import pytest

from fastws import connect
from fastws.exceptions import ConnectionClosed

from ..support.asyncio import async_test
from .peers import PeerProcess, stop_process_group
from .test_relay_redis import STEP, RedisServer

RUNNER = """
import asyncio, signal, sys
from fastws.relay import Relay, RedisBackplane, serve_relay

async def main():
    url, history, outbox = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    backplane = RedisBackplane(url, max_outbox=outbox, reconnect_max=0.2)
    relay = Relay(history=history, backplane=backplane)
    async with serve_relay("127.0.0.1", 0, relay=relay, log_interval=None) as server:
        print(f"listening on http://127.0.0.1:{server.port}", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()

asyncio.run(main())
"""


class PersistentRedis(RedisServer):
    """redis-server that keeps its data in an append-only file across a restart."""

    async def start(self) -> None:
        import fastws  # noqa: F401

        original = PeerProcess.__init__

        def with_persistence(peer, name, args, cwd):
            args = [a for a in args]
            args[args.index("--appendonly") + 1] = "yes"
            args += ["--appendfsync", "always", "--dir", str(self.tmp_path)]
            original(peer, name, args, cwd)

        PeerProcess.__init__ = with_persistence  # type: ignore[method-assign]
        try:
            await super().start()
        finally:
            PeerProcess.__init__ = original  # type: ignore[method-assign]


class HistoryRelay:
    """A relay process with a Redis history (``Relay(history=N)`` and a ``RedisBackplane``)."""

    def __init__(self, redis_url: str, tmp_path, history: int = 1000, outbox: int = 10000) -> None:
        args = [sys.executable, "-c", RUNNER, redis_url, str(history), str(outbox)]
        self.peer = PeerProcess("relay with history", args, tmp_path)
        self.port = int(self.peer.wait_line(r"listening on http://127\.0\.0\.1:(\d+)", timeout=STEP).group(1))

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}/{path}"

    async def backplane(self, predicate, what: str) -> dict:
        import urllib.request

        def get() -> dict:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/stats", timeout=STEP) as response:
                return json.loads(response.read())["backplane"]

        deadline = time.monotonic() + STEP
        while True:
            stats = await asyncio.to_thread(get)
            if predicate(stats):
                return stats
            if time.monotonic() > deadline:
                raise AssertionError(f"relay :{self.port}: {what} not reached in {STEP}s: {stats}")
            await asyncio.sleep(0.02)

    def kill(self) -> None:
        self.peer.process.send_signal(signal.SIGKILL)
        self.peer.process.wait(STEP)
        self.peer.process.stdout.close()

    def stop(self) -> None:
        if self.peer.process.poll() is None:
            stop_process_group(self.peer.process, 10)
            assert self.peer.process.returncode == 0, self.peer.stderr_text()
            self.peer.process.stdout.close()


@pytest.fixture
def relays(tmp_path):
    started: list[HistoryRelay] = []

    def start(redis_url: str, **options) -> HistoryRelay:
        relay = HistoryRelay(redis_url, tmp_path, **options)
        started.append(relay)
        return relay

    yield start
    for relay in started:
        relay.stop()


async def receive_json(ws, count: int = 1) -> list:
    return [json.loads(await asyncio.wait_for(ws.recv(), STEP)) for _ in range(count)]


async def subscribe(relay: HistoryRelay, topic: str, since=None, epoch=None):
    """An envelope connection subscribed to ``topic``, and its subscribed notice."""
    ws = await connect(relay.url("?envelope=1"))
    command = {"subscribe": topic}
    if since is not None:
        command.update(since=since, epoch=epoch)
    await ws.send(json.dumps(command))
    [notice] = await receive_json(ws)
    assert notice["subscribed"] == topic
    return ws, notice


def envelopes(topic: str, offsets) -> list:
    return [{"topic": topic, "offset": n, "data": f"m{n}"} for n in offsets]


@async_test
async def test_history_is_shared_and_survives_a_relay_killed_and_restarted(tmp_path, relays):
    redis = RedisServer(tmp_path)
    await redis.start()
    try:
        a, b = relays(redis.url), relays(redis.url)
        sub, notice = await subscribe(b, "t")
        epoch = notice["epoch"]
        assert notice == {"subscribed": "t", "epoch": epoch, "offset": 0}
        await b.backplane(lambda s: "t" in s["subscribed"], "subscribed")
        async with connect(a.url("t")) as publisher, connect(a.url("t")) as other:
            await a.backplane(lambda s: "t" in s["subscribed"], "subscribed")
            for n in range(1, 11):
                await publisher.send(f"m{n}")
            assert await receive_json(sub, 10) == envelopes("t", range(1, 11))
            # Delivered from Redis, but never back to its sender.
            await other.send("m11")
            assert await asyncio.wait_for(publisher.recv(), STEP) == "m11"
            assert await receive_json(sub) == envelopes("t", [11])
            b.kill()  # the subscriber's relay dies; messages go on meanwhile
            for n in range(12, 21):
                await publisher.send(f"m{n}")
            await a.backplane(lambda s: s["published"] == 20, "all published")
            b2 = relays(redis.url)
            sub2, notice = await subscribe(b2, "t", since=11, epoch=epoch)
            assert notice == {"subscribed": "t", "epoch": epoch, "offset": 20, "recovered": True}
            assert await receive_json(sub2, 9) == envelopes("t", range(12, 21))
            await b2.backplane(lambda s: "t" in s["subscribed"], "subscribed")
            await publisher.send("m21")
            assert await receive_json(sub2) == envelopes("t", [21])
            # A raw topic URL recovers too: one notice, then raw messages.
            async with connect(a.url(f"t?since=18&epoch={epoch}")) as raw:
                assert await receive_json(raw) == [{"subscribed": "t", "epoch": epoch, "offset": 21, "recovered": True}]
                assert [await asyncio.wait_for(raw.recv(), STEP) for _ in range(3)] == ["m19", "m20", "m21"]
            # Another epoch: told, nothing replayed.
            sub3, notice = await subscribe(b2, "t", since=5, epoch="elsewhere")
            assert notice["recovered"] is False and notice["reason"] == "epoch changed"
            await sub3.close()
            await sub2.close()
    finally:
        redis.stop()


@async_test
async def test_redis_stopped_and_restarted_nothing_lost_within_the_bound(tmp_path, relays):
    redis = PersistentRedis(tmp_path)
    await redis.start()
    try:
        a, b = relays(redis.url, outbox=300), relays(redis.url, outbox=300)
        sub, notice = await subscribe(b, "t")
        await b.backplane(lambda s: "t" in s["subscribed"], "subscribed")
        publisher = await connect(a.url("t"))
        sent = 0

        async def publish(count: int) -> None:
            nonlocal sent
            for _ in range(count):
                sent += 1
                await publisher.send(f"m{sent}")

        await publish(50)
        assert await receive_json(sub, 50) == envelopes("t", range(1, 51))
        kept = 50  # messages a has published to Redis
        for count in (200, 400):
            redis.stop()
            await a.backplane(lambda s: s["state"] != "connected", "disconnected")
            await publish(count)  # kept in a's outbox, up to 300
            stats = await a.backplane(lambda s, count=count: s["buffered"] + s["lost"] == count, "buffered")
            assert stats["buffered"] == min(count, 300) and stats["lost"] == max(0, count - 300)
            await redis.start()  # the same data (append-only file) on the same port
            await a.backplane(lambda s: s["state"] == "connected" and s["buffered"] == 0, "flushed")
            await b.backplane(lambda s: s["state"] == "connected" and "t" in s["subscribed"], "resubscribed")
            await publish(10)
            kept += min(count, 300) + 10
            # Published before the next outage begins: send() returns once the
            # frames are written, which may be before relay a has read them.
            await a.backplane(lambda s, kept=kept: s["published"] == kept, "published")
        # b missed what a flushed before it resubscribed: it filled that from the stream.
        got = await receive_json(sub, 50 + 200 + 10 + 300 + 10 - 50)
        expected_data = [f"m{n}" for n in range(51, 261)] + [f"m{n}" for n in range(261, 561)]
        expected_data += [f"m{n}" for n in range(661, 671)]
        assert [g["data"] for g in got] == expected_data  # in order, once; the 100 over the bound never left a
        assert [g["offset"] for g in got] == list(range(51, 571))  # offsets have no hole: nothing lost in Redis
        assert (await a.backplane(lambda s: True, "stats"))["lost"] == 100
        await publisher.close()
        await sub.close()
    finally:
        redis.stop()


@async_test
async def test_redis_losing_its_data_is_told_as_a_gap(tmp_path, relays):
    redis = RedisServer(tmp_path)  # no persistence: a restart loses the history and the epoch
    await redis.start()
    try:
        a = relays(redis.url)
        sub, notice = await subscribe(a, "t")
        raw = await connect(a.url("t?since=0"))  # a raw subscriber that counts offsets
        assert (await receive_json(raw))[0]["recovered"] is True
        await a.backplane(lambda s: "t" in s["subscribed"], "subscribed")
        async with connect(a.url("t")) as publisher:
            for n in range(1, 4):
                await publisher.send(f"m{n}")
            assert await receive_json(sub, 3) == envelopes("t", range(1, 4))
            assert [await asyncio.wait_for(raw.recv(), STEP) for _ in range(3)] == ["m1", "m2", "m3"]
            redis.stop()
            await a.backplane(lambda s: s["state"] != "connected", "disconnected")
            await redis.start()
            await a.backplane(lambda s: s["state"] == "connected" and "t" in s["subscribed"], "resubscribed")
            for n in range(1, 3):
                await publisher.send(f"n{n}")
            gap, first, second = await receive_json(sub, 3)
        assert gap["gap"] == "t" and gap["reason"] == "epoch changed" and gap["epoch"] != notice["epoch"]
        assert (first["offset"], first["data"], second["offset"]) == (1, "n1", 2)
        assert gap["offset"] == 0  # the new epoch starts here: nothing of it was missed
        # The raw one is closed with 4002 before n1, reconnects with what it counted, and is told.
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(raw.recv(), STEP)
        assert closed.value.code == 4002 and closed.value.reason == "gap: reconnect with since"
        async with connect(a.url(f"t?since=3&epoch={notice['epoch']}")) as again:
            [told] = await receive_json(again)
            assert told == {
                "subscribed": "t",
                "epoch": gap["epoch"],
                "offset": 2,
                "recovered": False,
                "reason": "epoch changed",
            }
        await sub.close()
    finally:
        redis.stop()


@pytest.mark.slow
@async_test
async def test_soak_subscribers_move_between_processes_and_recover(tmp_path, relays):
    rng = random.Random(7)
    redis = RedisServer(tmp_path)
    await redis.start()
    try:
        processes = [relays(redis.url, history=200), relays(redis.url, history=200)]
        total = 3000
        published = 0

        async def subscriber(index: int) -> tuple[int, int]:
            relay = processes[index % 2]
            ws, notice = await subscribe(relay, "t")
            epoch, last = notice["epoch"], notice["offset"]
            first, gaps = None, 0
            while last < total:
                budget = rng.randint(1, 300)
                while budget and last < total:
                    message = json.loads(await asyncio.wait_for(ws.recv(), STEP))
                    if "gap" in message:
                        raise AssertionError(f"unexpected gap {message}")
                    assert message["offset"] == last + 1, (index, last, message)  # once, in order
                    assert message["data"] == f"m{message['offset']}"
                    first = first or message["offset"]
                    last, budget = message["offset"], budget - 1
                await ws.close()
                if last >= total:
                    break
                if rng.random() < 0.1:  # away for longer than the history holds
                    target = min(published + 250, total)
                    while published < target:
                        await asyncio.sleep(0.005)
                relay = processes[rng.randrange(2)]  # back on either process
                ws, notice = await subscribe(relay, "t", since=last, epoch=epoch)
                if not notice["recovered"]:
                    assert notice["reason"] == "history gone" and notice["offset"] > last
                    gaps += 1
                    last = notice["offset"]
            await ws.close()
            return first or 0, gaps

        tasks = [asyncio.ensure_future(subscriber(i)) for i in range(20)]
        for process in processes:
            await process.backplane(lambda s: "t" in s["subscribed"], "subscribed")
        async with connect(processes[0].url("t")) as publisher:
            for n in range(1, total + 1):
                await publisher.send(f"m{n}")
                published = n
                if n % 10 == 0:
                    await asyncio.sleep(0.002)  # a steady stream
            results = await asyncio.wait_for(asyncio.gather(*tasks), 120)
        assert all(first >= 1 for first, _ in results)
    finally:
        redis.stop()
