"""Headless Chromium as a compressed subscriber of the relay: it offers
permessage-deflate, the relay answers without context takeover, and every
published message reaches the page intact from the one compressed frame the
relay shares among its compressed subscribers."""

from __future__ import annotations

import asyncio
import json
from contextlib import AsyncExitStack

import pytest

import fastws
from fastws.relay import Relay, serve_relay

from ..support.asyncio import async_test, until
from ..support.codecs import use_codec
from .peers import LARGE_TIMEOUT, TIMEOUT, Chromium
from .test_chromium import PAGE_HELPERS


@pytest.fixture(autouse=True)
def backend(codec, monkeypatch):
    use_codec(monkeypatch, codec)
    return codec


@pytest.fixture(scope="module")
def chromium():
    browser = Chromium.launch()
    yield browser
    browser.close()


def json_message(n: int) -> str:
    items = [{"symbol": f"SYM{i}", "bid": 100 + (n * 7 + i) % 97 / 4, "ask": 101 + (n + i) % 89 / 4} for i in range(14)]
    return json.dumps({"seq": n, "type": "tick", "items": items})


MESSAGES = [json_message(n) for n in range(200)] + ["é€😀a" * 30000, "", "x"]
BINARY = bytes(range(256)) * 64


async def open_tab(stack: AsyncExitStack, chromium: Chromium, url: str) -> tuple:
    page = await stack.enter_async_context(chromium.page())
    assert await page.evaluate(PAGE_HELPERS, TIMEOUT) == "ready"
    opened = await page.evaluate(f"openSocket({json.dumps(url)}, [])", LARGE_TIMEOUT + 5)
    return page, opened


def record(ws, writes: list) -> None:
    write = ws.transport.write
    ws.transport.write = lambda data: (writes.append(bytes(data)), write(data))[1]


def data_frames(codec, wire: bytes) -> list:
    frames = codec.FrameParser(is_client=True, assemble=False, rsv1_allowed=True).feed(wire)
    return [frame for frame in frames if frame.opcode in (0, 1, 2)]


@async_test
async def test_chromium_subscribers_receive_the_shared_compressed_frames(chromium, backend):
    relay = Relay(codec=backend)
    async with serve_relay(relay=relay) as server, AsyncExitStack() as stack:
        url = f"ws://127.0.0.1:{server.port}/prices"
        tabs = [await open_tab(stack, chromium, url) for _ in range(2)]
        for _, opened in tabs:
            assert "permessage-deflate" in opened["extensions"]
            assert "server_no_context_takeover" in opened["extensions"]
        plain = await fastws.connect(url, compression=None)
        await until(lambda: relay.topics().get("prices") == 3)
        browsers = [ws for ws in relay._subscribers if ws.connection.deflate is not None]
        assert len(browsers) == 2 and all(ws.connection.deflate.send_reset for ws in browsers)
        writes: dict = {ws: [] for ws in relay._subscribers}
        for ws, sink in writes.items():
            record(ws, sink)

        async with fastws.connect(url, compression=None) as publisher:
            for message in MESSAGES:
                await publisher.send(message)
            await publisher.send(BINARY)
            collect = f"""(async () => {{
                const got = [];
                for (let i = 0; i < {len(MESSAGES) + 1}; i++) got.push(await nextMessage());
                const bin = new Uint8Array(got.pop());
                return {{text: got, binary: Array.from(bin.slice(0, 512)), binaryLength: bin.length}};
            }})()"""
            results = await asyncio.gather(*(page.evaluate(collect, LARGE_TIMEOUT + 5) for page, _ in tabs))
            for result in results:
                assert result["text"] == MESSAGES  # every message intact, in order
                assert result["binaryLength"] == len(BINARY) and bytes(result["binary"]) == BINARY[:512]
            plain_got = [await asyncio.wait_for(plain.recv(), TIMEOUT) for _ in range(len(MESSAGES) + 1)]
            assert plain_got == [*MESSAGES, BINARY]

        # On the wire: the two tabs got the very same compressed bytes; the plain subscriber plain frames.
        wires = {ws: b"".join(sink) for ws, sink in writes.items() if ws.connection.deflate is not None}
        assert len(set(wires.values())) == 1
        compressed = data_frames(backend, next(iter(wires.values())))
        assert len(compressed) == len(MESSAGES) + 1
        assert all(frame.rsv1 for frame in compressed if frame.payload)
        plain_wire = b"".join(sink for ws, sinks in writes.items() if ws.connection.deflate is None for sink in sinks)
        assert not any(frame.rsv1 for frame in data_frames(backend, plain_wire))
        assert len(next(iter(wires.values()))) * 2 < len(plain_wire)
        await plain.close()


@async_test
async def test_chromium_recovers_compressed_envelopes(chromium, backend):
    """A page that comes back with ``since`` gets the missed messages as JSON
    envelopes (compressed, from the history), then live ones."""
    relay = Relay(codec=backend, history=100)
    async with serve_relay(relay=relay) as server, AsyncExitStack() as stack:
        base = f"ws://127.0.0.1:{server.port}/feed"
        async with fastws.connect(base, compression=None) as publisher:
            for n in range(1, 31):
                await publisher.send(json_message(n))
            await until(lambda: relay.stats.messages_in == 30)
            page, opened = await open_tab(stack, chromium, base + "?since=10&envelope=1")
            assert "server_no_context_takeover" in opened["extensions"]
            await until(lambda: relay.topics().get("feed") == 2)
            await publisher.send(json_message(31))
            got = await page.evaluate(
                "(async () => { const got = []; for (let i = 0; i < 22; i++) got.push(await nextMessage());"
                " return got; })()",
                LARGE_TIMEOUT + 5,
            )
        notice = json.loads(got[0])
        assert notice["subscribed"] == "feed" and notice["recovered"] is True and notice["offset"] == 30
        envelopes = [json.loads(text) for text in got[1:]]
        assert [e["offset"] for e in envelopes] == list(range(11, 32))
        assert [e["data"] for e in envelopes] == [json_message(n) for n in range(11, 32)]
