"""permessage-deflate (RFC 7692): negotiation, compression on the wire, and
decompression bounded by the message size limit. Over both codec backends."""

from __future__ import annotations

import tracemalloc
import zlib

import pytest

from fastws import connect, serve
from fastws.connection import Connection, PreparedMessage
from fastws.exceptions import InvalidHandshake
from fastws.extensions.permessage_deflate import PerMessageDeflate, parse_extensions

from .support.asyncio import async_test
from .support.codecs import use_codec


def negotiate(server: PerMessageDeflate, client: PerMessageDeflate, codec):
    value, server_session = server.accept_offer([client.offer()])
    client_session = client.accept_response(value)
    return (
        Connection(is_client=False, deflate=server_session, codec=codec),
        Connection(is_client=True, deflate=client_session, codec=codec),
        value,
    )


def test_parse_extensions():
    assert parse_extensions(['permessage-deflate; client_max_window_bits, x-other; a="1,2"', "foo"]) == [
        ("permessage-deflate", [("client_max_window_bits", None)]),
        ("x-other", [("a", "1,2")]),
        ("foo", []),
    ]


@pytest.mark.parametrize(
    "offer, expected",
    [
        ("permessage-deflate", "permessage-deflate; server_max_window_bits=12"),
        (
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
        ),
        ("permessage-deflate; server_max_window_bits=10", "permessage-deflate; server_max_window_bits=10"),
        (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=12",
        ),
        # Invalid first offers are declined; the next acceptable one is taken.
        ("permessage-deflate; foo=1, permessage-deflate", "permessage-deflate; server_max_window_bits=12"),
        ("permessage-deflate; server_max_window_bits=16", None),
        ("permessage-deflate; server_max_window_bits=09", None),
        ("permessage-deflate; server_max_window_bits=1\xb3", None),  # not ASCII digits (was a ValueError)
        ("permessage-deflate; client_max_window_bits=7", None),
        ("permessage-deflate; server_no_context_takeover=1", None),
        ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
        ("x-webkit-deflate-frame", None),
    ],
)
def test_server_negotiation(offer, expected):
    accepted = PerMessageDeflate().accept_offer([offer])
    assert (accepted[0] if accepted else None) == expected


def test_server_honours_an_eight_bit_window_by_not_compressing(codec):
    value, session = PerMessageDeflate().accept_offer(["permessage-deflate; server_max_window_bits=8"])
    assert value == "permessage-deflate; server_max_window_bits=8"
    server = Connection(is_client=False, deflate=session, codec=codec)
    assert server.send("x" * 1000)[0] & 0x40 == 0  # no RSV1: sent uncompressed


@pytest.mark.parametrize(
    "response",
    [
        "permessage-deflate; server_max_window_bits=13",  # above what we asked
        "permessage-deflate; client_max_window_bits=13",  # above what we offered
        "permessage-deflate; unknown=1",
        "permessage-deflate; server_max_window_bits=12; server_max_window_bits=12",
        "x-other",
        "permessage-deflate",  # ignores our server_max_window_bits
    ],
)
def test_client_rejects_invalid_responses(response):
    with pytest.raises(InvalidHandshake):
        PerMessageDeflate().accept_response(response)


@pytest.mark.parametrize(
    "settings",
    [
        PerMessageDeflate(),
        PerMessageDeflate(server_no_context_takeover=True, client_no_context_takeover=True),
        PerMessageDeflate(server_max_window_bits=9, client_max_window_bits=15),
        PerMessageDeflate(server_max_window_bits=None, client_max_window_bits=None),
    ],
)
def test_messages_round_trip_compressed(codec, settings):
    server, client, _ = negotiate(settings, settings, codec)
    messages = [f'{{"event": "tick", "value": {i}}}' for i in range(50)] + [bytes(100000), "é" * 3000, "", b""]
    for message in messages:
        wire = client.send(message)
        if message:
            assert wire[0] & 0x40  # RSV1 on the (first) frame
        assert server.receive_data(wire) == [codec.Frame(1 if isinstance(message, str) else 2, message)]
        assert client.receive_data(server.send(message)) == [codec.Frame(1 if isinstance(message, str) else 2, message)]


def test_context_takeover_shrinks_repeated_messages(codec):
    server, client, _ = negotiate(PerMessageDeflate(), PerMessageDeflate(), codec)
    message = '{"type": "price", "symbol": "ABCDEF", "bid": 101.25, "ask": 101.5}'
    first, second = server.send(message), server.send(message)
    assert len(second) < len(first) < len(message)
    reset, _, _ = negotiate(PerMessageDeflate(server_no_context_takeover=True), PerMessageDeflate(), codec)
    assert len(reset.send(message)) == len(reset.send(message))


@pytest.mark.parametrize("takeover", [True, False], ids=["takeover", "no-takeover"])
def test_large_messages_are_compressed_alone_and_the_next_one_starts_afresh(codec, takeover):
    """From ``large_message`` bytes a message gets its own compressor (memLevel
    ``large_mem_level``); small ones around it keep using the connection's, which
    restarts after it: the peer's window then holds the large message."""
    settings = PerMessageDeflate(server_no_context_takeover=not takeover, client_no_context_takeover=not takeover)
    server, client, _ = negotiate(settings, settings, codec)
    small = '{"type": "price", "symbol": "ABCDEF", "bid": 101.25, "ask": 101.5}'
    large = ('{"id": %d, "name": "record", "tags": ["a", "b"]}' * 2000) % tuple(range(2000))
    messages = [small, small, large, small, small, large.encode(), large, small]
    for sender, receiver in ((server, client), (client, server)):
        for message in messages:
            expected = codec.Frame(1 if isinstance(message, str) else 2, message)
            assert receiver.receive_data(sender.send(message)) == [expected]
    fresh = len(negotiate(settings, settings, codec)[0].send(small))  # a first message, no window
    assert len(server.send(small)) < fresh if takeover else len(server.send(small)) == fresh
    server.send(large)
    assert server.deflate._encoder is None  # the connection's compressor was let go
    assert len(server.send(small)) == fresh  # so the next message starts with an empty window


@pytest.mark.parametrize("keep", [False, True], ids=["window-kept", "decompressor-kept"])
def test_between_messages_the_receiver_keeps_only_the_last_window(codec, keep):
    """With context takeover the sender refers back into earlier messages; the
    receiver keeps their last 2^window bytes, not its decompressor, and primes
    the next one with them (``keep_decompressor`` keeps the decompressor)."""
    settings = PerMessageDeflate(server_max_window_bits=10, client_max_window_bits=10, keep_decompressor=keep)
    server, client, _ = negotiate(settings, settings, codec)
    messages = [f'{{"tick": {i}, "symbol": "ABCDEF", "pad": "{"x" * (i % 40)}"}}' for i in range(200)]
    messages += ["y" * 3000, "z" * 10, bytes(range(256)) * 8, "after the big ones"]
    stream = b""
    for index, message in enumerate(messages):
        wire = client.send(message)
        if 10 <= index < 200:  # a tick refers back into the ticks before it
            assert len(wire) < len(message) // 2
        assert server.receive_data(wire) == [codec.Frame(1 if isinstance(message, str) else 2, message)]
        stream += message.encode() if isinstance(message, str) else message
        deflate = server.deflate
        if keep:
            assert deflate._decoder is not None and deflate._history == b""
        else:
            assert deflate._decoder is None and deflate._history == stream[-1024:]


def test_large_message_compressor_settings(codec):
    """Not a timing test: the large-message path must produce what the peer
    inflates to the same message, whatever memLevel it uses, and be off with None."""
    large = ("abcdefghij" * 3000).encode()
    off, peer, _ = negotiate(PerMessageDeflate(large_message=None), PerMessageDeflate(), codec)
    on, peer_on, _ = negotiate(PerMessageDeflate(large_mem_level=9), PerMessageDeflate(), codec)
    assert peer.receive_data(off.send(large)) == [codec.Frame(2, large)]
    assert peer_on.receive_data(on.send(large)) == [codec.Frame(2, large)]
    assert off.deflate._encoder is not None and on.deflate._encoder is None  # only the small path keeps one
    with pytest.raises(ValueError, match="large_mem_level"):
        PerMessageDeflate(large_mem_level=10)
    with pytest.raises(ValueError, match="mem_level"):
        PerMessageDeflate(mem_level=0)


def test_trailer_is_removed_and_rsv1_only_on_first_frame(codec):
    server, client, _ = negotiate(PerMessageDeflate(), PerMessageDeflate(), codec)
    server.max_frame_size = 50
    wire = server.send(bytes(range(256)) * 20)
    frames = codec.FrameParser(is_client=True, assemble=False, rsv1_allowed=True).feed(wire)
    assert len(frames) > 1
    assert [f.rsv1 for f in frames] == [True] + [False] * (len(frames) - 1)
    assert not b"".join(f.payload for f in frames).endswith(b"\x00\x00\xff\xff")
    assert client.receive_data(wire)[0].payload == bytes(range(256)) * 20


def test_threshold_leaves_small_messages_uncompressed(codec):
    server, _, _ = negotiate(PerMessageDeflate(threshold=100), PerMessageDeflate(), codec)
    assert server.send("small")[0] & 0x40 == 0
    assert server.send("x" * 100)[0] & 0x40


def test_decompression_bomb_stops_at_the_limit_with_1009(codec):
    server, client, _ = negotiate(PerMessageDeflate(), PerMessageDeflate(), codec)
    server.max_message_size = 1 << 20
    bomb = client.send(bytes(64 << 20))  # 64 MiB of zeros: about 64 KiB compressed
    assert len(bomb) < 200_000
    tracemalloc.start()
    try:
        events = server.receive_data(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert events == []
    assert server.close_code == 1009
    assert peak < 8 << 20  # the limit (1 MiB) and the compressed input, never 64 MiB


def test_corrupt_compressed_data_fails_the_connection(codec):
    server, _, _ = negotiate(PerMessageDeflate(), PerMessageDeflate(), codec)
    server.receive_data(codec.encode_frame(2, b"\xff\xff\xff\xff", rsv1=True, mask=True))
    assert server.close_code == 1002


def test_invalid_utf8_after_decompression_is_1007(codec):
    server, _, _ = negotiate(PerMessageDeflate(), PerMessageDeflate(), codec)
    compressor = zlib.compressobj(6, zlib.DEFLATED, -11)
    data = compressor.compress(b"\xff\xfe") + compressor.flush(zlib.Z_SYNC_FLUSH)
    server.receive_data(codec.encode_frame(1, data[:-4], rsv1=True, mask=True))
    assert server.close_code == 1007


@pytest.fixture
def backend(codec, monkeypatch):
    use_codec(monkeypatch, codec)


@pytest.mark.usefixtures("backend")
@async_test
async def test_asyncio_server_and_client_negotiate_compression():
    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async with serve(echo) as server:
        async with connect(f"ws://127.0.0.1:{server.port}/") as ws:
            assert ws.extension is not None
            for message in ["hello" * 100, bytes(50000), "é"]:
                await ws.send(message)
                assert await ws.recv() == message
        async with connect(f"ws://127.0.0.1:{server.port}/", compression=None) as ws:
            assert ws.extension is None
            await ws.send("plain")
            assert await ws.recv() == "plain"
    async with serve(echo, compression=None) as server, connect(f"ws://127.0.0.1:{server.port}/") as ws:
        assert ws.extension is None
        await ws.send("declined")
        assert await ws.recv() == "declined"


def test_deflate_implementation_is_pluggable(codec):
    """Any zlib-compatible module can do the work (isal, zlib-ng); the peer sees
    standard DEFLATE either way."""
    import types

    calls = []
    counting = types.SimpleNamespace(**{name: getattr(zlib, name) for name in ("DEFLATED", "Z_SYNC_FLUSH", "error")})
    counting.compressobj = lambda *args: calls.append("compress") or zlib.compressobj(*args)
    counting.decompressobj = lambda *args: calls.append("decompress") or zlib.decompressobj(*args)
    server, client, _ = negotiate(PerMessageDeflate(zlib=counting), PerMessageDeflate(), codec)
    message = "pluggable " * 100
    assert client.receive_data(server.send(message)) == [codec.Frame(1, message)]
    assert server.receive_data(client.send(message)) == [codec.Frame(1, message)]
    assert calls == ["compress", "decompress"]


# -- prepared messages: one compressed copy shared by many connections ----------------------


def test_prepared_message_is_compressed_once_for_every_no_takeover_session(codec):
    """The relay's case: sessions without server context takeover and the same
    window share one compressed frame, which every peer inflates."""
    calls = []
    import types

    counting = types.SimpleNamespace(**{name: getattr(zlib, name) for name in ("DEFLATED", "Z_SYNC_FLUSH", "error")})
    counting.compressobj = lambda *args: calls.append(args) or zlib.compressobj(*args)
    counting.decompressobj = zlib.decompressobj
    settings = PerMessageDeflate(server_no_context_takeover=True, zlib=counting)
    pairs = [negotiate(settings, PerMessageDeflate(), codec) for _ in range(5)]
    message = '{"type": "price", "symbol": "ABCDEF", "bid": 101.25, "ask": 101.5}' * 10
    prepared = PreparedMessage(message, codec)
    wires = [server.send_prepared(prepared) for server, _, _ in pairs]
    assert len(calls) == 1  # one compression for five connections
    assert all(wire is wires[0] for wire in wires)  # the very same bytes object
    assert wires[0][0] == 0xC1 and len(wires[0]) < len(prepared.frames) // 4  # FIN + RSV1 + TEXT, compressed
    second = PreparedMessage("second " * 20, codec)
    for server, client, _ in pairs:
        assert client.receive_data(wires[0]) == [codec.Frame(1, message)]
        # the next shared message decodes after it, whatever the peer's window holds
        assert client.receive_data(server.send_prepared(second)) == [codec.Frame(1, "second " * 20)]
    assert len(calls) == 2


def test_prepared_message_plain_and_compressed_connections_side_by_side(codec):
    plain_server, plain_client = Connection(is_client=False, codec=codec), Connection(is_client=True, codec=codec)
    server, client, _ = negotiate(PerMessageDeflate(server_no_context_takeover=True), PerMessageDeflate(), codec)
    prepared = PreparedMessage(bytes(4096), codec)
    plain = plain_server.send_prepared(prepared)
    assert plain is prepared.frames and not plain[0] & 0x40
    compressed = server.send_prepared(prepared)
    assert compressed[0] & 0x40 and len(compressed) < 100
    assert plain_client.receive_data(plain) == [codec.Frame(2, bytes(4096))]
    assert client.receive_data(compressed) == [codec.Frame(2, bytes(4096))]
    assert "compressed for windows [12]" in repr(prepared)


def test_prepared_message_one_copy_per_window_size(codec):
    """A peer that limits the server's window to 9 bits cannot take a copy
    compressed with 11: it gets its own, made once too."""
    settings = PerMessageDeflate(server_no_context_takeover=True)
    wide = [negotiate(settings, PerMessageDeflate(), codec) for _ in range(2)]
    narrow = [negotiate(settings, PerMessageDeflate(server_max_window_bits=9), codec) for _ in range(2)]
    assert wide[0][0].deflate.send_window_bits == 12 and narrow[0][0].deflate.send_window_bits == 9
    message = "".join(f"{i:04d}" for i in range(600))  # 2400 bytes: long references tell the windows apart
    prepared = PreparedMessage(message, codec)
    wires = [server.send_prepared(prepared) for server, _, _ in wide + narrow]
    assert wires[0] is wires[1] and wires[2] is wires[3] and wires[0] != wires[2]
    for (_, client, _), wire in zip(wide + narrow, wires):
        assert client.receive_data(wire) == [codec.Frame(1, message)]


def test_prepared_message_with_server_context_takeover(codec):
    """A session with context takeover may take the shared copy too (it refers
    to nothing before it); its own compressor then restarts, since the peer's
    window holds a message that compressor never saw."""
    server, client, value = negotiate(PerMessageDeflate(), PerMessageDeflate(), codec)
    assert "server_no_context_takeover" not in value and not server.deflate.send_reset
    message = '{"type": "price", "symbol": "ABCDEF", "bid": 101.25, "ask": 101.5}'
    sequence = [server.send(message), server.send(message)]  # the second refers back to the first
    assert len(sequence[1]) < len(sequence[0])
    assert server.deflate._encoder is not None
    shared = server.send_prepared(PreparedMessage("zzzz" + message[::-1] * 3, codec))
    assert shared[0] & 0x40
    assert server.deflate._encoder is None  # reset
    sequence += [shared, server.send(message), server.send(message)]
    received = [event for wire in sequence for event in client.receive_data(wire)]
    assert [event.payload for event in received] == [message, message, "zzzz" + message[::-1] * 3, message, message]


def test_compressor_idle_for_a_ping_interval_is_released(codec):
    """Two pings with nothing compressed between them drop the compressor; the
    next message starts a new window, and the peer (keeping its own) reads it."""
    server, client, _ = negotiate(PerMessageDeflate(), PerMessageDeflate(), codec)
    message = '{"type": "price", "symbol": "ABCDEF", "bid": 101.25}'
    wires = [server.send(message)]
    server.send_ping(b"1")
    assert server.deflate._encoder is not None  # used since the last ping
    wires.append(server.send(message))
    server.send_ping(b"2")
    assert server.deflate._encoder is not None
    server.send_ping(b"3")
    assert server.deflate._encoder is None  # a whole interval without compressing
    wires += [server.send(message), server.send(message)]
    assert len(wires[2]) == len(wires[0]) and len(wires[3]) == len(wires[1])  # a fresh window, then context again
    received = [event.payload for wire in wires for event in client.receive_data(wire)]
    assert received == [message] * 4
    assert client.deflate._history.endswith(message.encode())  # the receiving side keeps its window


def test_stale_compressor_after_a_shared_copy_would_corrupt(codec):
    """Why the reset above is needed: a compressor that keeps its window across
    a shared copy refers to the wrong bytes at the peer."""
    server, client, _ = negotiate(PerMessageDeflate(), PerMessageDeflate(), codec)
    message = "abcdefghijklmnopqrstuvwxyz0123456789" * 3
    assert client.receive_data(server.send(message)) == [codec.Frame(1, message)]
    shared = PreparedMessage("0123456789" * 20, codec).deflated(server.deflate)  # no send_prepared: no reset
    assert client.receive_data(shared) == [codec.Frame(1, "0123456789" * 20)]
    stale = server.send(message)  # refers back 108 bytes: at the peer, into the shared copy
    [event] = client.receive_data(stale)
    assert len(event.payload) == len(message) and event.payload != message  # silently wrong


def test_prepared_message_thresholds_and_tiny_windows(codec):
    server, client, _ = negotiate(
        PerMessageDeflate(server_no_context_takeover=True, threshold=64), PerMessageDeflate(), codec
    )
    small = PreparedMessage("x" * 63, codec)
    assert server.send_prepared(small) is small.frames
    large = PreparedMessage("x" * 64, codec)
    assert server.send_prepared(large)[0] & 0x40
    # a peer that allows only an 8-bit window: zlib cannot compress for it
    value, session = PerMessageDeflate().accept_offer(["permessage-deflate; server_max_window_bits=8"])
    eight = Connection(is_client=False, deflate=session, codec=codec)
    assert eight.send_prepared(large) is large.frames


def test_client_connections_compress_and_mask_their_own_copy(codec):
    server, client, _ = negotiate(PerMessageDeflate(server_no_context_takeover=True), PerMessageDeflate(), codec)
    prepared = PreparedMessage("hello " * 100, codec)
    first, second = client.send_prepared(prepared), client.send_prepared(prepared)
    assert first[1] & 0x80 and second[1] & 0x80  # masked
    assert first[0] & 0x40  # compressed by the client's own session
    assert first != second  # fresh mask keys
    assert prepared._deflated is None  # no shared copy made for clients
    assert server.receive_data(first + second) == [codec.Frame(1, "hello " * 100)] * 2
