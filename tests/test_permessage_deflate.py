"""permessage-deflate (RFC 7692): negotiation, compression on the wire, and
decompression bounded by the message size limit. Over both codec backends."""

from __future__ import annotations

import tracemalloc
import zlib

import pytest

import fastws.connection
from fastws import connect, serve
from fastws.connection import Connection
from fastws.exceptions import InvalidHandshake
from fastws.extensions.permessage_deflate import PerMessageDeflate, parse_extensions

from .support.asyncio import async_test


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
        ("permessage-deflate", "permessage-deflate; server_max_window_bits=11"),
        (
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11",
        ),
        ("permessage-deflate; server_max_window_bits=10", "permessage-deflate; server_max_window_bits=10"),
        (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=11",
        ),
        # Invalid first offers are declined; the next acceptable one is taken.
        ("permessage-deflate; foo=1, permessage-deflate", "permessage-deflate; server_max_window_bits=11"),
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
        "permessage-deflate; server_max_window_bits=12",  # above what we asked
        "permessage-deflate; client_max_window_bits=12",  # above what we offered
        "permessage-deflate; unknown=1",
        "permessage-deflate; server_max_window_bits=11; server_max_window_bits=11",
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
    monkeypatch.setattr(fastws.connection, "default_codec", codec)


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
