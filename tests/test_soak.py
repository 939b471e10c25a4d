"""A sustained soak: many clients, random messages, random disconnects.

``FASTWS_SOAK_SECONDS`` (default 20; run 60 or more by hand), ``FASTWS_SOAK_CLIENTS``
(50) and ``FASTWS_SOAK_SEED`` set the run. The servers (async handler API and
Listener API, permessage-deflate on) run in their own process (see
test_scale.ServerProcess); the clients are fastws clients in this process, half
of their sessions with compression, half without. Each client, in a loop:
connects to one of the two servers; exchanges 1-20 rounds of 1-4 pipelined
messages of random size (1 B-256 KiB, log-uniform; text or binary;
incompressible or repetitive), checking every echo; then leaves in one of four
ways: a clean close, ``transport.abort()``, an abort right after sending a large
message (the server is mid-echo), or an abort after half a frame (the server's
parser holds a partial frame).

Afterwards the server process must have no connection, no task, no WebSocket
object and no logged error left, and its RSS must be near its level after a
short warm-up of the same traffic (a leak grows with the run; allocator
retention does not).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import time

import pytest

from fastws import connect
from fastws._fdlimit import raise_fd_limit
from fastws.exceptions import ConnectionClosed

from .support.asyncio import async_test
from .support.processes import ServerProcess

SOAK_SECONDS = float(os.environ.get("FASTWS_SOAK_SECONDS", "20"))
CLIENTS = int(os.environ.get("FASTWS_SOAK_CLIENTS", "50"))
SEED = int(os.environ.get("FASTWS_SOAK_SEED", "20240601"))
WARMUP_SECONDS = min(4.0, max(1.0, SOAK_SECONDS / 5))
MAX_SIZE = 256 * 1024
# RSS may end this far above its post-warm-up level (allocator retention from
# the peak of 50 clients x 256 KiB messages in flight, several copies each).
RSS_GROWTH_LIMIT_KIB = 64 * 1024
STEP_TIMEOUT = 60.0  # any single await; generous for slow CI machines

# Text pool: mostly ASCII, with 2-, 3- and 4-byte UTF-8 characters.
ALPHABET = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ0123456789.,;\n" * 4 + "éüßçñ" + "€漢字カナ" + "😀🚀"


@dataclasses.dataclass
class Totals:
    sessions: int = 0
    messages: int = 0
    bytes: int = 0
    text: int = 0
    compressed_sessions: int = 0
    clean: int = 0
    abort: int = 0
    abort_mid_echo: int = 0
    abort_mid_frame: int = 0
    by_api: dict = dataclasses.field(default_factory=lambda: {"handler": 0, "listener": 0})


class Pools:
    """Payload material, built once from the seed: messages are random slices."""

    def __init__(self, rng: random.Random) -> None:
        self.random_bytes = rng.randbytes(2 * MAX_SIZE)
        words = [rng.randbytes(rng.randint(2, 9)).hex().encode() for _ in range(300)]
        self.repetitive_bytes = b" ".join(rng.choice(words) for _ in range(2 * MAX_SIZE // 10))[: 2 * MAX_SIZE]
        self.text = "".join(rng.choice(ALPHABET) for _ in range(2 * MAX_SIZE))

    def message(self, rng: random.Random):
        size = min(MAX_SIZE, int(2 ** rng.uniform(0, 18)))  # 1 B .. 256 KiB, log-uniform
        if rng.random() < 0.5:
            start = rng.randrange(len(self.text) - size)
            return self.text[start : start + size]
        pool = self.random_bytes if rng.random() < 0.5 else self.repetitive_bytes
        start = rng.randrange(len(pool) - size)
        return pool[start : start + size]


async def session(server: ServerProcess, pools: Pools, rng: random.Random, totals: Totals) -> None:
    api = rng.choice(["handler", "listener"])
    compression = {} if rng.random() < 0.5 else {"compression": None}
    ws = await asyncio.wait_for(connect(server.uri(api), **compression), STEP_TIMEOUT)
    try:
        totals.sessions += 1
        totals.by_api[api] += 1
        totals.compressed_sessions += ws.extension is not None
        for _ in range(rng.randint(1, 20)):
            batch = [pools.message(rng) for _ in range(rng.choice([1, 1, 1, 2, 4]))]
            for message in batch:
                await asyncio.wait_for(ws.send(message), STEP_TIMEOUT)
            for message in batch:
                echoed = await asyncio.wait_for(ws.recv(), STEP_TIMEOUT)
                if type(echoed) is not type(message) or echoed != message:
                    raise AssertionError(
                        f"bad echo on {api} ({'deflate' if ws.extension else 'plain'}): sent {type(message).__name__} "
                        f"of {len(message)}, got {type(echoed).__name__} of {len(echoed)}"
                    )
                totals.messages += 1
                totals.bytes += len(message)
                totals.text += isinstance(message, str)
        ending = rng.random()
        if ending < 0.4:
            await asyncio.wait_for(ws.close(), STEP_TIMEOUT)
            assert ws.close_code == 1000, (ws.close_code, ws.close_reason)
            totals.clean += 1
        elif ending < 0.7:
            ws.transport.abort()
            totals.abort += 1
        elif ending < 0.85:
            ws.send_nowait(pools.message(rng) * 2)
            await asyncio.sleep(rng.choice([0, 0.001, 0.01]))
            ws.transport.abort()
            totals.abort_mid_echo += 1
        else:
            frame = ws.connection.send(pools.message(rng) * 2)
            ws.transport.write(frame[: max(1, len(frame) // 2)])
            await asyncio.sleep(0.005)
            ws.transport.abort()
            totals.abort_mid_frame += 1
    finally:
        if not ws.closed:
            ws.abort()
        await asyncio.wait_for(ws.wait_closed(), STEP_TIMEOUT)


async def run_clients(server: ServerProcess, seconds: float, seed: int, totals: Totals) -> None:
    pools = Pools(random.Random(seed))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds

    async def client(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        number = 0
        while loop.time() < deadline:
            number += 1
            try:
                await session(server, pools, rng, totals)
            except (AssertionError, ConnectionClosed, OSError, asyncio.TimeoutError) as exc:
                raise AssertionError(f"client {index}, session {number} (seed {seed}): {exc!r}") from exc

    await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(CLIENTS))), seconds + 5 * STEP_TIMEOUT)


@pytest.mark.slow
@pytest.mark.skipif(SOAK_SECONDS <= 0, reason="FASTWS_SOAK_SECONDS=0")
@async_test
async def test_soak_random_traffic_and_disconnects():
    raise_fd_limit(4 * CLIENTS + 256)
    server = ServerProcess(compression=True, ping_interval=1.0, ping_timeout=20.0)
    try:
        await run_clients(server, WARMUP_SECONDS, SEED + 1, Totals())
        baseline = await server.wait_idle()
        assert not any(baseline["open"]) and baseline["tasks"] == 0, baseline

        totals = Totals()
        started = time.perf_counter()
        await run_clients(server, SOAK_SECONDS, SEED, totals)
        elapsed = time.perf_counter() - started
        during = await server.stats()
        final = await server.wait_idle()
    finally:
        exit_code = server.stop()

    growth = None
    if baseline["rss_kib"] is not None and final["rss_kib"] is not None:
        growth = final["rss_kib"] - baseline["rss_kib"]
    print(
        f"\nsoak {elapsed:.1f} s, {CLIENTS} clients, seed {SEED}, {final['backend']} codec: "
        f"{totals.sessions} sessions ({totals.by_api['handler']} handler / {totals.by_api['listener']} listener API, "
        f"{totals.compressed_sessions} with permessage-deflate), {totals.messages} messages echoed and checked "
        f"({totals.text} text), {totals.bytes / 2**20:.0f} MiB, {totals.messages / elapsed:.0f} msg/s; "
        f"endings: {totals.clean} clean closes, {totals.abort} aborts, {totals.abort_mid_echo} aborts mid-echo, "
        f"{totals.abort_mid_frame} aborts mid-frame\n"
        f"server after: open {final['open']}, tasks {final['tasks']}, WebSocket objects {final['websockets']}, "
        f"errors {final['errors']}; RSS {baseline['rss_kib']} KiB after warm-up -> {final['rss_kib']} KiB after "
        f"(peak {during['peak_rss_kib']} KiB)"
    )
    assert totals.sessions >= CLIENTS and totals.messages > 0
    assert final["open"] == [0, 0], final
    assert final["tasks"] == 0, final["task_samples"]
    assert final["websockets"] == 0, final
    assert final["errors"] == 0, final["error_samples"]
    assert exit_code == 0
    if growth is not None:
        assert growth < RSS_GROWTH_LIMIT_KIB, f"server RSS grew by {growth} KiB during the soak"
