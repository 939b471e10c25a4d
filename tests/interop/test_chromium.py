"""fastws server against a real headless Chromium, driven over the DevTools
protocol: the page's WebSocket talks to a fastws echo server that records what
it received and how the connection closed.

Chromium always offers permessage-deflate, and sends large messages as frames
of about 128 KiB, split anywhere, even inside a UTF-8 code point.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager

import pytest

import fastws

from ..support.asyncio import async_test
from ..support.codecs import use_codec
from .peers import (
    CLOSE_REASON,
    FRAGMENTED_SIZE,
    LARGE_BINARY,
    LARGE_TEXT,
    LARGE_TIMEOUT,
    MANY,
    MIB,
    TIMEOUT,
    Chromium,
    RecordingEcho,
)

# Installed in the page: one WebSocket (`socket`), its messages queued in order.
PAGE_HELPERS = r"""
var socket = null, inbox = [], waiting = null, socketClosed = null;

function withTimeout(promise, seconds, what) {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${seconds}s: ${what}`)), seconds * 1000);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

function openSocket(url, protocols) {
  socket = new WebSocket(url, protocols);
  socket.binaryType = "arraybuffer";
  socket.onmessage = (event) => {
    inbox.push(event.data);
    if (waiting) { const wake = waiting; waiting = null; wake(); }
  };
  socketClosed = new Promise((resolve) => {
    socket.onclose = (e) => resolve({wasClean: e.wasClean, code: e.code, reason: e.reason});
  });
  const opened = new Promise((resolve, reject) => {
    socket.onopen = () => resolve({protocol: socket.protocol, extensions: socket.extensions});
    socket.onerror = () => reject(new Error("WebSocket error before open"));
  });
  return withTimeout(opened, __TIMEOUT__, "open");
}

function nextMessage() {
  const arrived = inbox.length ? Promise.resolve() : new Promise((resolve) => { waiting = resolve; });
  return withTimeout(arrived.then(() => inbox.shift()), __TIMEOUT__, "message");
}

function waitClosed() { return withTimeout(socketClosed, __TIMEOUT__, "close"); }

// The same bytes as peers.pattern_bytes().
function patternBytes(size) {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = Math.imul(i, 2654435761) >>> 24;
  return bytes;
}

// The same string as peers.multibyte_text().
function multibyteText(size) {
  let text = "\u00e9\u20ac\u{1F600}a".repeat(Math.floor(size / 10));
  return text + "a".repeat(size - new TextEncoder().encode(text).length);
}

"ready"
""".replace("__TIMEOUT__", str(int(LARGE_TIMEOUT)))


@pytest.fixture(autouse=True)
def backend(codec, monkeypatch):
    use_codec(monkeypatch, codec)


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium for the module; each test opens its own tab."""
    browser = Chromium.launch()
    yield browser
    browser.close()


class BrowserSession:
    """A tab with the page helpers installed, and the fastws echo server it talks to."""

    def __init__(self, page, echo: RecordingEcho, url: str) -> None:
        self.page, self.echo, self.url = page, echo, url

    async def run(self, script: str, timeout: float = LARGE_TIMEOUT):
        """Run ``script`` as the body of an async function in the page; return its value."""
        return await self.page.evaluate(f"(async () => {{ {script} }})()", timeout + 5)

    async def open(self, protocols=()) -> dict:
        """Open the page's WebSocket; return its protocol and extensions once the server handler runs."""
        opened = await self.run(f"return await openSocket({json.dumps(self.url)}, {json.dumps(list(protocols))});")
        await asyncio.wait_for(self.echo.connected.wait(), TIMEOUT)
        return opened


@asynccontextmanager
async def browser_session(chromium: Chromium, **serve_options):
    """A fastws echo server (``serve_options``) and a new tab to reach it from."""
    echo = RecordingEcho()
    async with fastws.serve(echo, "127.0.0.1", 0, **serve_options) as server, chromium.page() as page:
        assert await page.evaluate(PAGE_HELPERS, TIMEOUT) == "ready"
        yield BrowserSession(page, echo, f"ws://127.0.0.1:{server.port}/")


@async_test
async def test_text_echo(chromium):
    async with browser_session(chromium) as session:
        opened = await session.open()
        assert opened["protocol"] == ""
        assert "permessage-deflate" in session.echo.connection.request.headers.get("Sec-WebSocket-Extensions", "")
        echoed = await session.run('socket.send("hello world"); return await nextMessage();')
        assert echoed == "hello world"
        assert session.echo.received == ["hello world"]


@async_test
async def test_subprotocol_negotiation(chromium):
    async with browser_session(chromium, subprotocols=["chat.v2", "chat.v1"]) as session:
        opened = await session.open(["chat.v1", "chat.v2"])
        assert opened["protocol"] == session.echo.connection.subprotocol == "chat.v2"


@async_test
async def test_262145_byte_arraybuffer_sent_in_fragments(chromium):
    async with browser_session(chromium) as session:
        await session.open()
        result = await session.run(
            f"""
            const sent = patternBytes({FRAGMENTED_SIZE});
            socket.send(sent.buffer);
            const echoed = await nextMessage();
            const got = new Uint8Array(echoed);
            return {{
              isArrayBuffer: echoed instanceof ArrayBuffer,
              length: got.length,
              identical: got.length === sent.length && got.every((byte, i) => byte === sent[i]),
            }};"""
        )
        assert result == {"isArrayBuffer": True, "length": FRAGMENTED_SIZE, "identical": True}
        assert session.echo.received == [LARGE_BINARY]


@async_test
async def test_1mib_multibyte_text(chromium):
    async with browser_session(chromium) as session:
        await session.open()
        result = await session.run(
            f"""
            const sent = multibyteText({MIB});
            socket.send(sent);
            const echoed = await nextMessage();
            return {{utf8Bytes: new TextEncoder().encode(sent).length, identical: echoed === sent}};"""
        )
        assert result == {"utf8Bytes": MIB, "identical": True}
        assert session.echo.received == [LARGE_TEXT]


@async_test
async def test_1000_messages_in_order(chromium):
    async with browser_session(chromium) as session:
        await session.open()
        echoed = await session.run(
            f"""
            for (let i = 0; i < {MANY}; i++) socket.send(`message ${{i}}`);
            const echoed = [];
            for (let i = 0; i < {MANY}; i++) echoed.push(await nextMessage());
            return echoed;"""
        )
        expected = [f"message {i}" for i in range(MANY)]
        assert echoed == expected
        assert session.echo.received == expected


@async_test
async def test_page_closes_with_4000_and_reason(chromium):
    async with browser_session(chromium) as session:
        await session.open()
        seen_by_page = await session.run(f"socket.close(4000, {json.dumps(CLOSE_REASON)}); return await waitClosed();")
        # The page reports the server's answer: fastws echoes the code and the reason.
        assert seen_by_page == {"wasClean": True, "code": 4000, "reason": CLOSE_REASON}
        assert await session.echo.wait_finished() == (4000, CLOSE_REASON)


@async_test
async def test_fastws_closes_with_4000_and_reason(chromium):
    async with browser_session(chromium) as session:
        await session.open()
        seen_by_page, _ = await asyncio.gather(
            session.run("return await waitClosed();"),
            asyncio.wait_for(session.echo.connection.close(4000, CLOSE_REASON), TIMEOUT),
        )
        assert seen_by_page == {"wasClean": True, "code": 4000, "reason": CLOSE_REASON}
        code, _ = await session.echo.wait_finished()
        assert code == 4000  # Chromium echoes the code
