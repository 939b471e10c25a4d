"""A publisher flooding one topic does not starve another topic's subscribers.

The flood comes from another process (a raw socket writing masked frames as
fast as the kernel takes them), so the relay must read it as fast as it can;
meanwhile a second publisher sends numbered messages on another topic, one
after the other (each once the previous one arrived), and its subscriber must
get every one of them, in order, while the flood is still running and while
the flooded topic's subscribers are behind (one reads as fast as it can, one
reads nothing). Latency is measured and printed, not asserted.

Why it holds: the relay reads each connection once per event-loop iteration
(at most one transport read, 256 KiB with asyncio), handles what that read
holds and fans it out without waiting for any subscriber (a subscriber that
cannot take more gets a bounded backlog, then the slow-consumer policy), so
the other topic's publisher is read in the same iteration.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

from fastws import connect
from fastws.relay import Relay, serve_relay

from .support.asyncio import async_test

STEP = 10.0  # bound on each wait

FLOODER = r"""
import base64, os, socket, sys, time
port = int(sys.argv[1])
sock = socket.create_connection(("127.0.0.1", port))
key = base64.b64encode(os.urandom(16))
sock.sendall(b"GET /flooded HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
head = b""
while b"\r\n\r\n" not in head:
    data = sock.recv(4096)
    if not data:
        sys.exit("closed during the handshake")
    head += data
if not head.startswith(b"HTTP/1.1 101"):
    sys.exit(head.decode(errors="replace"))
payload = b"A" * 64
frame = b"\x82\xc0" + bytes(4) + payload   # binary, masked with a zero key (payload unchanged)
chunk = frame * 1000
deadline = time.monotonic() + 120          # in case nobody stops it
while time.monotonic() < deadline:
    sock.sendall(chunk)
"""


def percentile(values: list, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def wait_for(predicate) -> None:
    async def poll():
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), STEP)


@async_test
async def test_a_flood_on_one_topic_does_not_starve_another():
    relay = Relay(max_backlog=256, policy="drop-oldest")  # flooded subscribers stay, behind
    async with serve_relay(relay=relay, compression=None) as server:
        base = f"ws://127.0.0.1:{server.port}"
        reader = await connect(base + "/flooded", compression=None)
        # Reads nothing (its keepalive may close it once it fails to answer pings: no matter).
        stalled = await connect(base + "/flooded", compression=None, max_queue=1)
        b_sub = await connect(base + "/steady")
        b_pub = await connect(base + "/steady")
        await wait_for(lambda: relay.topics() == {"flooded": 2, "steady": 2})
        a_received = 0

        async def read_flood():
            nonlocal a_received
            async for _ in reader:
                a_received += 1

        reading = asyncio.get_running_loop().create_task(read_flood())
        flooder = subprocess.Popen([sys.executable, "-c", FLOODER, str(server.port)])
        b_sent = 0
        try:
            # The flood is on: the relay has published thousands of its messages.
            await wait_for(lambda: relay.stats.messages_in > 5_000)
            flood_before = relay.stats.messages_in
            latencies = []
            count = 30
            for n in range(count):
                sent = time.perf_counter()
                await b_pub.send(f"b{n}")
                b_sent += 1
                got = await asyncio.wait_for(b_sub.recv(), STEP)
                latencies.append(time.perf_counter() - sent)
                assert got == f"b{n}"  # every message, in order
            flood_after = relay.stats.messages_in - b_sent
            # All of it happened during the flood, with the flooded topic behind:
            assert flooder.poll() is None, "the flood stopped before the steady topic was done"
            assert flood_after > flood_before  # the relay kept taking flood messages meanwhile
            assert a_received < flood_after  # the reading subscriber is behind
            assert relay.stats.dropped > 0  # the stalled one is full: drop-oldest applied to it only
            assert relay.topics()["steady"] == 2
        finally:
            flooder.kill()
            flooder.wait(STEP)
            reading.cancel()
        print(
            f"\nsteady topic during the flood: {count} messages, latency "
            f"p50 {percentile(latencies, 0.5) * 1e3:.2f} ms, p99 {percentile(latencies, 0.99) * 1e3:.2f} ms, "
            f"max {max(latencies) * 1e3:.2f} ms; flood messages taken meanwhile: {flood_after - flood_before}, "
            f"flooded subscriber received {a_received}, dropped for the stalled one {relay.stats.dropped}"
        )
        for ws in (reader, stalled, b_sub, b_pub):
            ws.transport.abort()
