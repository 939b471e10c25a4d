"""The sans-I/O ``Connection`` is one Python source run two ways: as written
(``fastws._connection_py``, with the Python codec) and compiled by Cython into an
extension type (``fastws._connection_c``, with the compiled codec). Which one
``fastws.connection`` exports follows the codec backend; so does the asyncio
layer's ``WebSocketCore`` (``fastws.asyncio._core_py`` or ``_core_c``), which
every asyncio test runs on, and the load generator's ``Bench``
(``fastws.loadgen._client_py`` or ``_client_c``).

Random sessions, valid and broken (frames from a peer, cut anywhere, with garbage
and truncations mixed in; sends, pings and closes from our side between reads),
must give the same events, replies, states, close codes and errors, exception
for exception, on both builds and on either codec.
"""

from __future__ import annotations

import importlib
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastws.codec
import fastws.connection
import fastws.loadgen.client
from fastws import _codec_py
from fastws.asyncio import protocol

from .support.codecs import BACKENDS, CONNECTION_MODULES, all_codecs, all_connection_classes
from .support.frames import client_frame, server_frame

CLASSES = all_connection_classes()


def test_the_codec_backend_picks_the_builds():
    expected = CONNECTION_MODULES[fastws.codec.BACKEND]
    assert fastws.connection.Connection.__module__ == expected
    # Every name comes from the same build: a compiled Connection's states are
    # the State members the I/O layers compare with.
    assert fastws.connection.State.__module__ == expected
    assert fastws.connection.PreparedMessage.__module__ == expected
    # The asyncio layer's per-message path follows the same choice.
    core = {"cython": "fastws.asyncio._core_c", "python": "fastws.asyncio._core_py"}[fastws.codec.BACKEND]
    assert protocol.WebSocketCore.__module__ == core
    assert issubclass(protocol.WebSocket, protocol.WebSocketCore)
    load = {"cython": "fastws.loadgen._client_c", "python": "fastws.loadgen._client_py"}[fastws.codec.BACKEND]
    assert fastws.loadgen.client.Bench.__module__ == load


@pytest.mark.skipif("cython" not in BACKENDS, reason="FASTWS_NO_EXTENSIONS: no compiled build to check")
@pytest.mark.parametrize(
    ("module", "name", "args"),
    [
        ("fastws._connection_c", "Connection", ()),
        ("fastws.asyncio._core_c", "WebSocketCore", ()),
        ("fastws.loadgen._client_c", "Bench", ("ws://127.0.0.1:1/",)),
    ],
)
def test_the_compiled_builds_are_extension_types(module, name, args):
    cls = getattr(importlib.import_module(module), name)
    assert not cls.__flags__ & (1 << 9)  # not Py_TPFLAGS_HEAPTYPE: a static (extension) type
    with pytest.raises(AttributeError):
        cls(*args).undeclared = 1  # fields, no __dict__, as the source's __slots__


@st.composite
def peer_frames(draw, is_client: bool):
    """One frame as the peer would send it (masked when it is a client), or something broken."""
    kind = draw(st.sampled_from(["text", "binary", "fragments", "ping", "pong", "close", "garbage", "bad"]))
    frame = server_frame if is_client else client_frame
    if kind == "text":
        return frame(1, draw(st.text(max_size=300)).encode())
    if kind == "binary":
        return frame(2, draw(st.binary(max_size=300)))
    if kind == "fragments":
        payload = draw(st.binary(max_size=200))
        cut = draw(st.integers(0, len(payload)))
        middle = frame(9, b"p") if draw(st.booleans()) else b""
        return frame(2, payload[:cut], fin=False) + middle + frame(0, payload[cut:])
    if kind in ("ping", "pong"):
        return frame(9 if kind == "ping" else 10, draw(st.binary(max_size=125)))
    if kind == "close":
        code = draw(st.sampled_from([None, 1000, 1001, 1002, 1005, 1006, 1015, 2999, 3000, 4999, 5000]))
        data = b"" if code is None else code.to_bytes(2, "big") + draw(st.text(max_size=20)).encode()
        return frame(8, data if draw(st.booleans()) else data[:1])
    if kind == "garbage":
        return draw(st.binary(min_size=1, max_size=20))
    # "bad": a valid frame with one bit or byte changed (RSV bits, opcodes, lengths, UTF-8)
    data = bytearray(frame(1, draw(st.sampled_from(["é", "a" * 130, "\u20ac\u20ac", ""])).encode()))
    index = draw(st.integers(0, len(data) - 1))
    data[index] ^= 1 << draw(st.integers(0, 7))
    return bytes(data)


actions = st.one_of(
    st.tuples(st.just("send"), st.one_of(st.text(max_size=50), st.binary(max_size=50))),
    st.tuples(st.just("fragment"), st.binary(max_size=20), st.booleans()),
    st.tuples(st.just("ping"), st.binary(max_size=130)),
    st.tuples(st.just("close"), st.sampled_from([1000, 1001, 1005, 4000, 999, None]), st.text(max_size=10)),
    st.tuples(st.just("writable"), st.booleans()),
    st.tuples(st.just("eof")),
)


@st.composite
def sessions(draw):
    is_client = draw(st.booleans())
    wire = b"".join(draw(st.lists(peer_frames(is_client), max_size=12)))
    cuts = sorted(draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    reads = [wire[a:b] for a, b in zip([0] + cuts, cuts + [len(wire)])]
    steps = [("read", piece) for piece in reads]
    for action in draw(st.lists(actions, max_size=6)):
        steps.insert(draw(st.integers(0, len(steps))), action)
    max_message_size = draw(st.sampled_from([None, 64, 1 << 20]))
    return is_client, max_message_size, steps


def outcome(call, *args):
    """What a call returned, or the exception it raised, as comparable values."""
    try:
        return "ok", call(*args)
    except Exception as exc:  # noqa: BLE001 - the point is to compare whatever is raised
        return type(exc).__name__, str(exc)


def unmasked(data: bytes, is_client: bool) -> bytes:
    """A client masks with a random key: compare what its frames carry instead."""
    if not is_client or not data:
        return data
    frames, parser = [], _codec_py.FrameParser(is_client=False, max_message_size=None, assemble=False)
    try:
        frames = parser.feed(data)
    except Exception as exc:  # noqa: BLE001
        return f"unparsable: {exc}".encode()
    return repr([(f.opcode, f.fin, f.payload) for f in frames]).encode()


def act(connection, step):
    kind, args = step[0], step[1:]
    if kind == "read":
        return [(frame.opcode, frame.payload) for frame in connection.receive_data(*args)]
    if kind == "eof":
        return connection.receive_eof()
    if kind == "fragment":
        sent = connection.send_fragment(args[0], fin=args[1])
    else:
        sent = {"send": connection.send, "ping": connection.send_ping, "close": connection.send_close}[kind](*args)
    return unmasked(sent, connection.is_client)


def run(connection_class, codec, session) -> list:
    is_client, max_message_size, steps = session
    connection = connection_class(is_client=is_client, max_message_size=max_message_size, codec=codec)
    trace = []
    for step in steps:
        kind = step[0]
        if kind == "writable":
            connection.writable = step[1]
            result = ("ok", connection.writable)
        else:
            result = outcome(act, connection, step)
        replies = unmasked(connection.data_to_send(), is_client)
        state = (connection.state, connection.close_code, connection.close_reason, connection.failing)
        trace.append((kind, result, replies, state, connection.should_close_transport, connection.buffered))
    closed = outcome(lambda: (type(connection.close_exception()).__name__, str(connection.close_exception())))
    trace.append(("end", closed, connection.close_sent, connection.close_received, connection.sending_fragments))
    return trace


@pytest.mark.skipif(len(CLASSES) < 2, reason="FASTWS_NO_EXTENSIONS: one build only")
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(session=sessions(), seed=st.integers(0, 1 << 30))
def test_both_builds_agree(session, seed):
    compiled, written = CLASSES
    for codec in all_codecs():
        random.seed(seed)
        expected = run(written, codec, session)
        assert run(compiled, codec, session) == expected, codec.__name__


@pytest.mark.parametrize("connection_class", CLASSES, ids=lambda cls: cls.__module__)
def test_a_subclass_overrides_what_the_class_calls_itself(connection_class):
    """Methods of the compiled build call each other as Python methods do, so
    a subclass's override is the one that runs (send_close() calls data_to_send())."""

    class Counting(connection_class):
        calls = 0

        def data_to_send(self):
            Counting.calls += 1
            return super().data_to_send()

    connection = Counting()
    assert connection.send_close(1000, "bye") == server_frame(8, b"\x03\xe8bye")
    assert Counting.calls == 1
