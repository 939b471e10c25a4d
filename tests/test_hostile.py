"""Hostile peers against the real asyncio server, on both codec backends.

Huge announced frames, messages growing past the limit, slowloris handshakes,
floods of pings and empty frames, bad close frames, peers vanishing at every
point, and a client that never reads. Every wait is bounded; nothing asserts on
a fixed sleep; servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import socket
import struct
import time
import tracemalloc

import pytest

from fastws import connect, serve
from fastws.asyncio.server import ServerConnection
from fastws.exceptions import ConnectionClosed

from .support.asyncio import RawPeer, async_test, leftover_tasks, server_idle, until, upgrade_request
from .support.codecs import use_codec
from .support.frames import client_frame

WAIT = 10.0  # bound on any single wait
DEADLINE = 60.0  # bound on a whole test


@pytest.fixture(autouse=True)
def backend(codec, monkeypatch):
    """Run every connection of the test on one codec backend."""
    use_codec(monkeypatch, codec)
    return codec


def hostile_test(function):
    return async_test(function, deadline=DEADLINE)


def uri(server) -> str:
    return f"ws://127.0.0.1:{server.port}/"


async def echo(ws):
    async for message in ws:
        await ws.send(message)


class Recorder:
    """A handler that echoes and records how each connection ended."""

    def __init__(self) -> None:
        self.codes: list[int] = []
        self.messages = 0
        self.done = asyncio.Event()
        self.active = 0

    async def __call__(self, ws) -> None:
        self.active += 1
        try:
            async for message in ws:
                self.messages += 1
                await ws.send(message)
        except ConnectionClosed as exc:
            self.codes.append(exc.code)
        else:
            self.codes.append(ws.close_code)
        finally:
            self.active -= 1
            self.done.set()

    async def wait_for_codes(self, count: int) -> list[int]:
        async def wait():
            while len(self.codes) < count:
                self.done.clear()
                await self.done.wait()

        await asyncio.wait_for(wait(), WAIT)
        return self.codes


def server_frames(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Split unmasked server frames by hand: (opcode, payload) list and the rest."""
    frames, pos = [], 0
    while len(data) - pos >= 2:
        first, second = data[pos], data[pos + 1]
        length, head = second & 0x7F, 2
        if length == 126:
            if len(data) - pos < 4:
                break
            (length,) = struct.unpack_from("!H", data, pos + 2)
            head = 4
        elif length == 127:
            if len(data) - pos < 10:
                break
            (length,) = struct.unpack_from("!Q", data, pos + 2)
            head = 10
        if len(data) - pos < head + length:
            break
        frames.append((first & 0x0F, data[pos + head : pos + head + length]))
        pos += head + length
    return frames, data[pos:]


async def read_frames(peer: RawPeer, count: int) -> list[tuple[int, bytes]]:
    """Read exactly ``count`` server frames (bounded in time)."""
    frames: list[tuple[int, bytes]] = []
    buffer = b""

    async def read():
        nonlocal buffer
        while len(frames) < count:
            chunk = await peer.reader.read(1 << 16)
            assert chunk, f"EOF after {len(frames)} of {count} frames"
            got, buffer = server_frames(buffer + chunk)
            frames.extend(got)

    await asyncio.wait_for(read(), WAIT)
    assert len(frames) == count, f"{len(frames) - count} frames more than expected"
    return frames


async def read_close(peer: RawPeer) -> tuple[int, bytes]:
    """Read frames until the close frame; return (code or None, whole payload)."""
    for _ in range(100):
        opcode, payload = await peer.read_frame()
        if opcode == 8:
            return (int.from_bytes(payload[:2], "big") if payload else None), payload
    raise AssertionError("no close frame")


async def echo_round_trip(server, message: str = "still serving") -> None:
    async def go():
        async with connect(uri(server)) as ws:
            await ws.send(message)
            assert await ws.recv() == message

    await asyncio.wait_for(go(), WAIT)


def masked_header(opcode: int, length: int, fin: bool = True) -> bytes:
    """A masked frame header announcing ``length`` bytes (key 00000000: payload as is)."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        return bytes((first, 0x80 | length)) + bytes(4)
    if length < 65536:
        return bytes((first, 0x80 | 126)) + struct.pack("!H", length) + bytes(4)
    return bytes((first, 0x80 | 127)) + struct.pack("!Q", length) + bytes(4)


# -- (a) sizes ----------------------------------------------------------------


def max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


@hostile_test
async def test_frame_announcing_2_63_minus_1_bytes_closes_1009_without_allocating():
    recorder = Recorder()
    async with serve(recorder, compression=None) as server:
        await echo_round_trip(server)  # warm up: imports, first allocations
        rss_before = max_rss_bytes()
        tracemalloc.start()
        try:
            peer = await RawPeer.open(server.port)
            tracemalloc.reset_peak()
            baseline = tracemalloc.get_traced_memory()[0]
            peer.writer.write(masked_header(2, 2**63 - 1) + b"some payload")
            code, _ = await read_close(peer)
            assert code == 1009
            assert await peer.read_until_eof() == b""
            assert 1009 in await recorder.wait_for_codes(2)
            peak = tracemalloc.get_traced_memory()[1] - baseline
        finally:
            tracemalloc.stop()
        assert peak < 1 << 20, f"{peak} bytes allocated for a frame header"
        assert max_rss_bytes() - rss_before < 32 << 20


@pytest.mark.parametrize(
    "header, code",
    [
        (masked_header(2, 2**63), 1002),  # most significant bit set
        (masked_header(2, 2**64 - 1), 1002),
        (masked_header(1, 1001), 1009),  # one byte over the limit, no payload sent
        (masked_header(2, 1001, fin=False), 1009),
    ],
    ids=["2^63", "2^64-1", "text-over-limit", "fragment-over-limit"],
)
@hostile_test
async def test_oversized_headers_are_refused_before_any_payload(header, code):
    async with serve(echo, compression=None, max_message_size=1000) as server:
        peer = await RawPeer.open(server.port)
        peer.writer.write(header)
        assert (await read_close(peer))[0] == code
        assert await peer.read_until_eof() == b""
        await echo_round_trip(server)


@hostile_test
async def test_without_a_limit_memory_follows_what_arrives_not_what_is_announced():
    got_data = asyncio.Event()
    conns = []

    async def handler(ws):
        conns.append(ws)
        got_data.set()
        await ws.wait_closed()

    async with serve(handler, compression=None, max_message_size=None) as server:
        tracemalloc.start()
        try:
            peer = await RawPeer.open(server.port)
            await asyncio.wait_for(got_data.wait(), WAIT)
            tracemalloc.reset_peak()
            baseline = tracemalloc.get_traced_memory()[0]
            peer.writer.write(masked_header(2, 2**63 - 1) + bytes(200_000))
            ws = conns[0]
            await until(lambda: ws.connection.buffered >= 200_000)
            peak = tracemalloc.get_traced_memory()[1] - baseline
        finally:
            tracemalloc.stop()
        assert ws.open and ws.connection.buffered <= 200_000 + 14
        assert peak < 4 << 20, f"{peak} bytes allocated for 200 kB received"
        peer.close()
        await until(lambda: server_idle(server))


@hostile_test
async def test_fragments_adding_up_past_the_limit_close_1009():
    recorder = Recorder()
    limit = 256 * 1024
    fragment = bytes(64 * 1024)
    async with serve(recorder, compression=None, max_message_size=limit) as server:
        # Four fragments reach the limit; the fifth header goes past it.
        peer = await RawPeer.open(server.port)
        for index in range(4):
            peer.send_frame(0 if index else 2, fragment, fin=False)
        peer.writer.write(masked_header(0, 1, fin=True))
        assert (await read_close(peer))[0] == 1009
        assert await peer.read_until_eof() == b""
        assert await recorder.wait_for_codes(1) == [1009]
        # Right at the limit is fine.
        peer = await RawPeer.open(server.port)
        for index in range(4):
            peer.send_frame(0 if index else 2, fragment, fin=index == 3)
        assert await read_frames(peer, 1) == [(2, bytes(limit))]
        peer.send_close()
        assert (await read_close(peer))[0] == 1000
        assert await recorder.wait_for_codes(2) == [1009, 1000]


@hostile_test
async def test_too_big_is_found_from_the_length_bytes_one_byte_at_a_time():
    limit = 1000
    async with serve(echo, compression=None, max_message_size=limit) as server:
        stream = client_frame(1, b"a" * 600, fin=False) + client_frame(0, b"b" * 401)
        peer = await RawPeer.open(server.port)
        peer.writer.write(stream)
        assert (await read_close(peer))[0] == 1009
        peer.close()
        # 600 + 401 is known once the second frame's 16-bit length has arrived:
        # 608 bytes of first frame, then 2 + 2 header bytes. No mask, no payload.
        peer = await RawPeer.open(server.port)
        for index in range(608 + 4):
            peer.writer.write(stream[index : index + 1])
            await peer.writer.drain()
        assert (await read_close(peer))[0] == 1009
        assert await peer.read_until_eof() == b""


async def send_and_read_until_closed(port: int, data: bytes) -> bytes:
    """Handshake on a plain socket, send ``data`` while reading; return what the
    server sent until EOF or a reset. (A StreamReader would drop bytes it
    already holds once the reset arrives.)"""
    loop = asyncio.get_running_loop()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    received = b""
    try:
        await loop.sock_sendall(sock, upgrade_request())

        async def send():
            try:
                await loop.sock_sendall(sock, data)
            except OSError:
                pass  # the server closed while we were sending

        sender = asyncio.ensure_future(send())
        while True:
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), WAIT)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        await asyncio.wait_for(sender, WAIT)
    finally:
        sock.close()
    head, _, frames = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return frames


@pytest.mark.parametrize("code", [1009, 1002])
@hostile_test
async def test_close_frame_is_sent_to_a_peer_that_is_still_sending(code):
    """The server fails the connection while the peer keeps sending: the close frame
    goes out before the socket closes. (Closing with unread input makes the kernel
    answer with a reset; on loopback the frame still arrives first.)"""
    async with serve(echo, compression=None, max_message_size=256 * 1024) as server:
        data = b"\x82\x02no" if code == 1002 else b""  # unmasked: a protocol error
        data += client_frame(2, bytes(64 * 1024), fin=False)
        data += client_frame(0, bytes(64 * 1024), fin=False) * 15  # past the limit
        frames, _ = server_frames(await send_and_read_until_closed(server.port, data))
        assert [(opcode, payload[:2]) for opcode, payload in frames] == [(8, code.to_bytes(2, "big"))]
        await until(lambda: server_idle(server))


# -- (b) slow and silent handshakes --------------------------------------------------


@hostile_test
async def test_slowloris_handshake_is_dropped_by_open_timeout():
    async with serve(echo, open_timeout=0.5) as server:
        peer = await RawPeer.open(server.port, handshake=False)
        request = upgrade_request()
        sent = 0

        async def trickle():
            nonlocal sent
            for byte in request:
                if peer.writer.is_closing() or peer.reader.at_eof():
                    return
                try:
                    peer.writer.write(bytes([byte]))
                    await peer.writer.drain()
                except ConnectionError:
                    return
                sent += 1
                await asyncio.sleep(0.05)

        sender = asyncio.ensure_future(trickle())
        started = time.monotonic()
        await echo_round_trip(server)  # served normally meanwhile
        assert await peer.read_until_eof() == b""  # dropped, no HTTP answer
        elapsed = time.monotonic() - started
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        assert sent < len(request), "the whole request was sent before the drop"
        assert elapsed < 0.5 + 5, elapsed
        await until(lambda: server_idle(server))
        peer.close()


@hostile_test
async def test_many_silent_connections_are_dropped_and_others_served():
    async with serve(echo, open_timeout=0.5) as server:
        peers = [await RawPeer.open(server.port, handshake=False) for _ in range(50)]
        await echo_round_trip(server)
        answers = await asyncio.gather(*(peer.read_until_eof() for peer in peers))
        assert answers == [b""] * 50
        await until(lambda: server_idle(server))
        for peer in peers:
            peer.close()


# -- (c) floods and control frames ------------------------------------------------------


@hostile_test
async def test_ping_flood_gets_every_pong_and_others_are_served():
    async with serve(echo) as server:
        peer = await RawPeer.open(server.port)
        count = 10_000
        peer.writer.write(b"".join(client_frame(9, i.to_bytes(4, "big")) for i in range(count)))
        reading = asyncio.ensure_future(read_frames(peer, count))
        await echo_round_trip(server)
        pongs = await reading
        assert pongs == [(10, i.to_bytes(4, "big")) for i in range(count)]
        peer.send_frame(1, b"after the flood")
        assert await read_frames(peer, 1) == [(1, b"after the flood")]
        peer.close()


@hostile_test
async def test_ping_flood_from_a_peer_that_never_reads_is_bounded():
    """Each ping makes a pong: a peer that sends pings and reads nothing must not
    make the server buffer its pongs without bound (write_limit / write_timeout)."""
    write_limit = 64 * 1024
    options = dict(write_limit=write_limit, write_timeout=0.5, ping_interval=None, close_timeout=1)
    async with serve(echo, **options) as server:
        peer = await RawPeer.open(server.port)
        (ws,) = server.connections
        peer.writer.transport.pause_reading()  # never read the pongs
        ping = client_frame(9, bytes(125))
        burst = ping * 1000  # 131 kB of pings, 127 kB of pongs
        highest = 0
        try:
            for _ in range(64):  # up to 8.4 MB of pings
                if ws.closed:
                    break
                peer.writer.write(burst)
                await asyncio.wait_for(peer.writer.drain(), 2)
                highest = max(highest, ws.buffered_amount)
        except (ConnectionError, asyncio.TimeoutError):
            pass  # the server stopped reading (backpressure) or dropped us: both fine
        highest = max(highest, ws.buffered_amount)
        still_open = ws.open
        peer.writer.transport.abort()
        await echo_round_trip(server)
        assert highest <= write_limit + (1 << 20), f"server buffered {highest} bytes of pongs, open={still_open}"


@hostile_test
async def test_unsolicited_pong_is_ignored():
    recorder = Recorder()
    async with serve(recorder) as server:
        peer = await RawPeer.open(server.port)
        for payload in (b"", b"never pinged", bytes(125)):
            peer.send_frame(10, payload)
        peer.send_frame(1, b"still open")
        assert await read_frames(peer, 1) == [(1, b"still open")]
        peer.send_close()
        assert (await read_close(peer))[0] == 1000
        assert await recorder.wait_for_codes(1) == [1000]


@hostile_test
async def test_close_without_code_is_echoed_empty_and_handler_sees_1005():
    recorder = Recorder()
    async with serve(recorder) as server:
        peer = await RawPeer.open(server.port)
        peer.send_frame(8, b"")
        assert await read_close(peer) == (None, b"")
        assert await peer.read_until_eof() == b""
        assert await recorder.wait_for_codes(1) == [1005]


@pytest.mark.parametrize(
    "payload, code",
    [
        ((1005).to_bytes(2, "big"), 1002),
        ((1006).to_bytes(2, "big"), 1002),
        ((1015).to_bytes(2, "big"), 1002),
        ((999).to_bytes(2, "big"), 1002),
        ((0).to_bytes(2, "big"), 1002),
        ((2999).to_bytes(2, "big"), 1002),
        ((5000).to_bytes(2, "big"), 1002),
        (b"\x03", 1002),  # one byte
        ((1000).to_bytes(2, "big") + b"\xff\xfe", 1007),  # reason not UTF-8
    ],
    ids=["1005", "1006", "1015", "999", "0", "2999", "5000", "1-byte", "bad-utf8"],
)
@hostile_test
async def test_invalid_close_frames_fail_the_connection(payload, code):
    recorder = Recorder()
    async with serve(recorder) as server:
        peer = await RawPeer.open(server.port)
        peer.send_frame(8, payload)
        assert (await read_close(peer))[0] == code
        assert await peer.read_until_eof() == b""
        assert await recorder.wait_for_codes(1) == [code]


@hostile_test
async def test_ten_thousand_empty_messages_are_delivered():
    counts = []

    async def counter(ws):
        count = 0
        async for message in ws:
            if message == "end":
                await ws.send(str(count))
                counts.append(count)
                continue
            assert message in (b"", "")
            count += 1

    async with serve(counter) as server:
        peer = await RawPeer.open(server.port)
        empty_binary, empty_text = client_frame(2, b""), client_frame(1, b"")
        # And empty messages in many empty fragments.
        fragmented = client_frame(2, b"", fin=False) + client_frame(0, b"", fin=False) * 98 + client_frame(0, b"")
        peer.writer.write(empty_binary * 10_000 + empty_text * 100 + fragmented * 10 + client_frame(1, b"end"))
        assert await read_frames(peer, 1) == [(1, b"10110")]
        assert counts == [10_110]
        peer.close()


@hostile_test
async def test_fragments_interleaved_with_many_control_frames():
    async with serve(echo) as server:
        peer = await RawPeer.open(server.port)
        parts = [bytes([i]) * i for i in range(200)]
        stream = b""
        for index, part in enumerate(parts):
            opcode = 0 if index else 2
            stream += client_frame(opcode, part, fin=index == len(parts) - 1)
            stream += client_frame(9, index.to_bytes(2, "big")) + client_frame(10, b"unsolicited")
        for size in (len(stream), 7):  # all at once, then in small pieces
            for start in range(0, len(stream), size):
                peer.writer.write(stream[start : start + size])
            frames = await read_frames(peer, len(parts) + 1)
            pongs, messages = frames[:-1], frames[-1:]
            assert pongs == [(10, i.to_bytes(2, "big")) for i in range(len(parts))]
            assert messages == [(2, b"".join(parts))]
        peer.close()


# -- (d) vanishing peers ------------------------------------------------------------------


def vanishing_peers():
    """Ways for a peer to disappear: what it sends, and whether it resets."""
    message = client_frame(1, b"hello")
    return [
        (b"", False),  # right after the handshake
        (message, False),  # after a message, without a close frame
        (message[:1], False),  # mid-header
        (message[:8], False),  # mid-payload
        (masked_header(2, 70000) + bytes(1000), False),  # mid-payload of a large frame
        (client_frame(1, b"frag", fin=False), False),  # mid-message
        (message, True),  # reset instead of FIN
        (masked_header(2, 70000) + bytes(1000), True),
        (None, False),  # mid-handshake
        (None, True),
    ]


@hostile_test
async def test_peers_vanishing_200_times_leave_nothing_behind():
    recorder = Recorder()
    ways = vanishing_peers()
    total = 200
    async with serve(recorder, ping_interval=None) as server:

        async def vanish(index: int) -> bool:
            data, reset = ways[index % len(ways)]
            peer = await RawPeer.open(server.port, handshake=data is not None)
            if data is None:
                peer.writer.write(upgrade_request()[:40])
            elif data:
                peer.writer.write(data)
            await peer.writer.drain()
            if reset:
                peer.writer.transport.abort()
            else:
                peer.close()
            return data is not None

        opened = 0
        for batch in range(0, total, 20):
            opened += sum(await asyncio.gather(*(vanish(i) for i in range(batch, batch + 20))))
        codes = await recorder.wait_for_codes(opened)
        assert codes == [1006] * opened, codes
        await until(lambda: server_idle(server) and recorder.active == 0)
        await echo_round_trip(server)
        await until(lambda: server_idle(server))
    gc.collect()
    tasks = leftover_tasks()
    assert tasks == [], tasks
    leftover = [obj for obj in gc.get_objects() if isinstance(obj, ServerConnection)]
    assert leftover == [], f"{len(leftover)} ServerConnection objects still alive"


# -- (e) a client that never reads ---------------------------------------------------------


@hostile_test
async def test_client_that_never_reads_is_bounded_by_write_limit_and_dropped():
    write_limit = 64 * 1024
    size = 16 * 1024
    seen = {"highest": 0}
    ended = asyncio.get_running_loop().create_future()

    async def flood(ws):
        if ws.request.path != "/flood":
            await echo(ws)
            return
        try:
            while True:
                sending = asyncio.ensure_future(ws.send(bytes(size)))
                await asyncio.sleep(0)  # written; send() now waits for the buffer to drain if it must
                seen["highest"] = max(seen["highest"], ws.buffered_amount)
                waiting_since = time.monotonic()
                await sending
        except ConnectionClosed as exc:
            ended.set_result((exc.code, exc.reason, time.monotonic() - waiting_since))

    async with serve(flood, write_limit=write_limit, write_timeout=0.5, compression=None) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(upgrade_request("/flood"))
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        writer.transport.pause_reading()  # from now on, read nothing
        # Another client is served normally while the flood goes on.
        async with connect(uri(server)) as ws:
            for i in range(20):
                await ws.send(str(i))
                assert await asyncio.wait_for(ws.recv(), WAIT) == str(i)
        code, reason, blocked_for = await asyncio.wait_for(ended, WAIT)
        assert (code, reason) == (1006, "write timed out")
        assert blocked_for >= 0.45, blocked_for  # dropped by write_timeout, not before
        # One message may go over the high-water mark, never more (header: 4 bytes).
        assert write_limit < seen["highest"] <= write_limit + size + 4, seen
        await until(lambda: server_idle(server))
        writer.transport.abort()
