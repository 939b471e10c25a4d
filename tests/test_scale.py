"""Many idle connections to a fastws server in its own process.

The server runs in a subprocess (``support.processes.ServerProcess``, also used by test_soak.py),
so its RSS is its own: the memory per connection is printed (run pytest with
``-s`` to see it) and only bounded generously, to catch a regression, not to
benchmark (bench/bench_memory.py does that). ``FASTWS_SCALE_CONNECTIONS`` sets N
(default 2000); it is lowered, with a note, if RLIMIT_NOFILE cannot be raised
enough for both processes.
"""

from __future__ import annotations

import asyncio
import os
from typing import Optional

import pytest

from fastws import connect
from fastws._fdlimit import raise_fd_limit

from .support.asyncio import async_test
from .support.processes import ServerProcess

CONNECTIONS = int(os.environ.get("FASTWS_SCALE_CONNECTIONS", "2000"))
MAX_KIB_PER_CONNECTION = 64  # without compression; today about 10 KiB
FD_MARGIN = 100


async def open_all(uri: str, count: int, concurrency: int = 100) -> list:
    semaphore = asyncio.Semaphore(concurrency)

    async def one():
        async with semaphore:
            return await connect(uri, compression=None)

    return await asyncio.gather(*(one() for _ in range(count)))


async def close_all(connections: list, concurrency: int = 200) -> None:
    semaphore = asyncio.Semaphore(concurrency)

    async def one(ws):
        async with semaphore:
            await ws.close()

    await asyncio.gather(*(one(ws) for ws in connections))


def per_connection_kib(before: dict, after: dict, count: int) -> Optional[float]:
    if before["rss_kib"] is None or after["rss_kib"] is None:
        return None  # no /proc: not Linux
    return (after["rss_kib"] - before["rss_kib"]) / count


@pytest.mark.slow
@pytest.mark.parametrize("api", ["handler", "listener"])
@async_test
async def test_many_idle_connections_stay_open_and_echo(api):
    # Each connection is one descriptor in this process and one in the server.
    limit, _ = raise_fd_limit(CONNECTIONS + FD_MARGIN)
    count = min(CONNECTIONS, limit - FD_MARGIN)
    if count < 100:
        pytest.skip(f"RLIMIT_NOFILE is {limit}: too low for this test")
    note = "" if count == CONNECTIONS else f" (lowered from {CONNECTIONS}: RLIMIT_NOFILE is {limit})"
    # Pings every second: the idle connections must answer them to stay open.
    server = ServerProcess(ping_interval=1.0, ping_timeout=10.0)
    connections: list = []
    try:
        warm = await open_all(server.uri(api), 50)  # one-time costs are not per connection
        await close_all(warm)
        baseline = await server.wait_idle()
        connections = await asyncio.wait_for(open_all(server.uri(api), count), 120)
        opened = await server.stats()
        await asyncio.sleep(2.5)  # idle through two keepalive rounds
        idle = await server.stats()
        assert idle["open"][0 if api == "handler" else 1] == count, idle
        assert all(ws.open for ws in connections)

        async def echo_check(index, ws):
            message = f"still here {index}"
            await ws.send(message)
            assert await asyncio.wait_for(ws.recv(), 30) == message

        await asyncio.wait_for(asyncio.gather(*(echo_check(i, ws) for i, ws in enumerate(connections))), 120)
        await asyncio.wait_for(close_all(connections), 120)
        assert all(ws.close_code == 1000 for ws in connections)
        final = await server.wait_idle()
    finally:
        for ws in connections:
            ws.abort()
        exit_code = server.stop()

    kib = per_connection_kib(baseline, opened, count)
    print(
        f"\n{count} idle connections{note}, {api} API, no compression, {opened['backend']} codec: "
        + (f"{kib:.1f} KiB per connection in the server process " if kib is not None else "RSS not available ")
        + f"(RSS {baseline['rss_kib']} -> {opened['rss_kib']} KiB; after 2.5 s idle: {idle['rss_kib']} KiB)"
    )
    assert final["open"] == [0, 0] and final["tasks"] == 0 and final["websockets"] == 0, final
    assert final["errors"] == 0, final["error_samples"]
    assert exit_code == 0
    if kib is not None:
        assert kib < MAX_KIB_PER_CONNECTION, f"{kib:.1f} KiB per idle connection"
