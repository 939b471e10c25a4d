"""Cancelling recv(), async for and send() never loses, duplicates or tears a message.

The property tests cancel at random points (chosen by hypothesis, counted in
event-loop iterations) while a peer streams numbered messages, on both codec
backends and on both event loops (asyncio's and uvloop's).
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastws import connect, serve
from fastws.exceptions import ConnectionClosed

from .support.asyncio import async_test
from .support.codecs import use_codec
from .support.frames import client_frame

TIMEOUT = 10
LOOPS = ["asyncio", "uvloop"]


@pytest.fixture(autouse=True)
def backend(codec, monkeypatch):
    """Run every connection of the test on one codec backend."""
    use_codec(monkeypatch, codec)
    return codec


def run(loop_name: str, coroutine) -> None:
    """Run ``coroutine`` to completion on a new loop of the given kind, bounded in time."""
    if loop_name == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(coroutine, 120))
    finally:
        loop.close()


async def iterations(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


@async_test
async def test_recv_cancelled_as_its_message_arrives_keeps_the_message():
    """The message is handed to the waiting recv() and the task is cancelled in
    the same loop iteration: the next recv() returns it."""
    results = []

    async def handler(ws):
        waiting = asyncio.ensure_future(ws.recv())
        await iterations(2)  # recv() is now waiting for a message
        ws.data_received(client_frame(1, b"one") + client_frame(1, b"two"))  # as the transport would
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        results.extend([await ws.recv(), await ws.recv()])

    async with serve(handler) as server, connect(f"ws://127.0.0.1:{server.port}/") as ws:
        await ws.wait_closed()
    assert results == ["one", "two"]


@async_test
async def test_wait_for_timeouts_on_recv_lose_nothing():
    count = 300
    received = []

    async def handler(ws):
        while len(received) < count:
            try:
                received.append(await asyncio.wait_for(ws.recv(), 0.0005))
            except asyncio.TimeoutError:
                continue

    async with serve(handler) as server, connect(f"ws://127.0.0.1:{server.port}/") as ws:
        for index in range(count):
            await ws.send(str(index))
            if index % 7 == 0:
                await asyncio.sleep(0.001)  # let some timeouts expire between messages
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    assert received == [str(index) for index in range(count)]


async def receive_with_cancellations(ws, count: int, schedule: list[int]) -> list:
    """recv() ``count`` messages, cancelling attempts after the numbers of loop
    iterations in ``schedule`` (cycled; ``None``: let that attempt finish, so
    the loop makes progress); alternates recv() and async for."""
    received: list = []
    attempt = 0
    iterator = ws.__aiter__()
    schedule = [*schedule, None]
    while len(received) < count:
        delay = schedule[attempt % len(schedule)]
        pending = asyncio.ensure_future(ws.recv() if attempt % 2 else iterator.__anext__())
        attempt += 1
        if delay is None:
            received.append(await pending)
            continue
        await iterations(delay)
        if not pending.done():
            pending.cancel()
        try:
            received.append(await pending)
        except asyncio.CancelledError:
            continue
    return received


@pytest.mark.parametrize("loop_name", LOOPS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schedule=st.lists(st.integers(0, 6), min_size=1, max_size=12), burst=st.integers(1, 16))
def test_cancelled_receives_get_every_message_exactly_once_in_order(loop_name, schedule, burst):
    count = 200

    async def main():
        outcome: list = []

        async def handler(ws):
            outcome.extend(await receive_with_cancellations(ws, count, schedule))

        async with serve(handler, max_queue=4) as server:
            async with connect(f"ws://127.0.0.1:{server.port}/", compression=None) as ws:
                for start in range(0, count, burst):
                    for index in range(start, min(start + burst, count)):
                        ws.send_nowait(f"m{index}")
                    await ws.drain()
                    await asyncio.sleep(0)
                await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        return outcome

    outcome: list = []

    async def record():
        outcome.extend(await main())

    run(loop_name, record())
    assert outcome == [f"m{index}" for index in range(count)]


@pytest.mark.parametrize("loop_name", LOOPS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schedule=st.lists(st.integers(0, 4), min_size=1, max_size=12))
def test_cancelled_sends_never_tear_or_duplicate_a_message(loop_name, schedule):
    """send() waits while the write buffer is full; cancelling it there leaves
    the message whole on the wire. The peer gets, in order and once each, every
    message whose send() returned, and never a torn or unknown one."""
    count = 60
    size = 20_000  # above write_limit: most sends wait for the buffer to drain

    async def main():
        received: list = []
        returned: list = []

        async def handler(ws):
            try:
                async for message in ws:
                    received.append(message)
            except ConnectionClosed:
                pass

        async with serve(handler, compression=None) as server:
            async with connect(f"ws://127.0.0.1:{server.port}/", write_limit=4096, compression=None) as ws:
                for index in range(count):
                    message = bytes([index]) * size
                    if index % (len(schedule) + 1) == len(schedule):
                        await ws.send(message)  # one send in each round runs to completion
                        returned.append(message)
                        continue
                    sending = asyncio.ensure_future(ws.send(message))
                    await iterations(schedule[index % (len(schedule) + 1)])
                    if not sending.done():
                        sending.cancel()
                    try:
                        await sending
                        returned.append(message)
                    except asyncio.CancelledError:
                        pass
            assert ws.close_code == 1000  # no frame was torn: the server saw a valid stream
        return received, returned

    result: list = []

    async def record():
        result.extend(await main())

    run(loop_name, record())
    received, returned = result
    indexes = [message[0] for message in received]
    assert all(message == bytes([message[0]]) * size for message in received)  # whole messages only
    assert indexes == sorted(set(indexes))  # in order, none twice
    assert set(message[0] for message in returned) <= set(indexes)  # every completed send arrived


@async_test
async def test_cancelled_send_fragments_closes_with_1011_instead_of_a_torn_message():
    release = asyncio.Event()
    seen = []

    async def pieces():
        yield "a"
        yield "b"
        await release.wait()  # never set: the send is cancelled here
        yield "c"

    async def handler(ws):
        try:
            async for message in ws:
                seen.append(message)
        except ConnectionClosed as exc:
            seen.append(exc.code)

    async with serve(handler) as server, connect(f"ws://127.0.0.1:{server.port}/") as ws:
        sending = asyncio.ensure_future(ws.send_fragments(pieces()))
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while not ws.connection.sending_fragments:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0)
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        assert ws.close_code == 1011
    assert seen == [1011]  # the partial message was never delivered as a whole one
