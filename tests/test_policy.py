"""fastws.policy: keepalive, read pausing and TCP close decisions, without I/O or a clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastws.connection import Connection, State
from fastws.policy import (
    COALESCE_BYTES,
    Keepalive,
    PeerDead,
    ReadFlow,
    SendPing,
    TransportAction,
    coalesce_writes,
    transport_action,
    unwritten,
)

from .support.frames import client_frame


def test_keepalive_pings_every_interval_and_matches_its_pong():
    keepalive = Keepalive(20.0, 10.0, now=100.0)
    assert keepalive.deadline == 120.0
    ping = keepalive.on_timer(120.0)
    assert isinstance(ping, SendPing) and len(ping.payload) == 4
    assert keepalive.deadline == 130.0  # the pong is due within the timeout
    assert not keepalive.pong_received(b"other", 121.0)  # unsolicited pongs are ignored
    assert keepalive.pong_received(ping.payload, 120.5)
    assert keepalive.latency == pytest.approx(0.5)
    assert keepalive.deadline == 140.0  # one interval after the previous ping
    assert not keepalive.pong_received(ping.payload, 121.0)  # answered already


def test_keepalive_declares_a_silent_peer_dead():
    keepalive = Keepalive(20.0, 10.0, now=0.0)
    assert isinstance(keepalive.on_timer(20.0), SendPing)
    assert isinstance(keepalive.on_timer(30.0), PeerDead)
    assert keepalive.deadline is None


def test_keepalive_data_since_the_ping_is_a_sign_of_life_until_it_stops():
    keepalive = Keepalive(20.0, 10.0, now=0.0)
    keepalive.on_timer(20.0)
    keepalive.data_received()
    assert keepalive.on_timer(30.0) is None  # busy peer: its pong may be queued behind its data
    assert keepalive.deadline == 40.0
    assert isinstance(keepalive.on_timer(40.0), PeerDead)  # nothing since


def test_keepalive_a_late_timer_means_a_stalled_loop_not_a_dead_peer():
    keepalive = Keepalive(20.0, 10.0, now=0.0)
    keepalive.on_timer(20.0)
    assert keepalive.on_timer(45.0) is None  # fired 15 s late: the loop was blocked
    assert keepalive.deadline == 46.0  # look again shortly, once pending input is read
    assert isinstance(keepalive.on_timer(46.0), PeerDead)


def test_keepalive_without_timeout_pings_forever_and_disabled_never_asks():
    keepalive = Keepalive(5.0, None, now=0.0)
    assert isinstance(keepalive.on_timer(5.0), SendPing)
    assert keepalive.deadline == 10.0
    assert isinstance(keepalive.on_timer(10.0), SendPing)
    disabled = Keepalive(None, 10.0, now=0.0)
    assert disabled.deadline is None and disabled.on_timer(1.0) is None


def test_read_flow_pauses_at_max_queue_and_resumes_at_half():
    flow = ReadFlow(4)
    assert [flow.after_put(n) for n in (1, 2, 3, 4)] == [False, False, False, True]
    assert flow.paused and not flow.after_put(5)  # already paused: no second pause
    assert [flow.after_get(n) for n in (4, 3, 2)] == [False, False, True]
    assert not flow.paused and not flow.after_get(1)


def test_read_flow_closing_resumes_and_bounds_the_queue():
    flow = ReadFlow(2)
    flow.after_put(2)
    assert flow.closing()  # the peer's close frame is behind the full queue
    assert not flow.after_put(3)  # never pauses again after close()
    assert flow.overflows(2) and not flow.overflows(1)
    assert not ReadFlow(2).overflows(5)  # before close(), nothing is dropped


def closed(connection: Connection, data: bytes) -> Connection:
    connection.receive_data(data)
    connection.data_to_send()  # sends the close reply, or the failure's close frame
    assert connection.state is State.CLOSED
    return connection


def test_transport_action_follows_rfc_6455_7_1_1(codec):
    close = client_frame(8, b"\x03\xe8")
    assert transport_action(Connection(codec=codec)) is TransportAction.WAIT  # still open
    assert transport_action(closed(Connection(codec=codec), close)) is TransportAction.CLOSE  # server closes first
    client = Connection(is_client=True, codec=codec)
    assert transport_action(closed(client, b"\x88\x02\x03\xe8")) is TransportAction.WAIT  # client waits for it
    client.receive_eof()
    assert transport_action(client) is TransportAction.CLOSE
    failed = closed(Connection(codec=codec), client_frame(3, b""))  # reserved opcode: 1002
    assert transport_action(failed) is TransportAction.LINGER  # unread data would reset our close frame
    failed.receive_eof()
    assert transport_action(failed) is TransportAction.CLOSE


def test_keepalive_schedule_is_uvicorns_interval_minus_the_last_rtt():
    """uvicorn's classes ping again ``interval - rtt`` after a pong (at once if
    the pong took longer than the interval): the next ping is due ``interval``
    after the previous one was sent. fastws.uvicorn relies on this to match them."""
    for interval, timeout, rtt in [(5.0, 20.0, 0.25), (5.0, 20.0, 8.0), (20.0, 20.0, 0.0)]:
        keepalive = Keepalive(interval, timeout, now=0.0)
        ping = keepalive.on_timer(interval)
        assert isinstance(ping, SendPing)
        assert keepalive.pong_received(ping.payload, interval + rtt)
        uvicorn_next_ping = interval + rtt + max(0.0, interval - rtt)
        assert keepalive.deadline == pytest.approx(uvicorn_next_ping)


sizes = st.lists(st.sampled_from([0, 1, 10, 1000, COALESCE_BYTES - 1, COALESCE_BYTES, 3 * COALESCE_BYTES]), max_size=40)


@given(sizes)
def test_coalesce_writes_keeps_the_bytes_joins_small_frames_and_passes_large_ones(sizes):
    pending = [bytes([index % 256]) * size for index, size in enumerate(sizes)]
    out = coalesce_writes(pending)
    assert b"".join(out) == b"".join(pending)
    large = [data for data in pending if len(data) >= COALESCE_BYTES]
    assert [data for data in out if any(data is frame for frame in large)] == large  # the same objects
    for data in out:
        assert any(data is frame for frame in large) or len(data) < 2 * COALESCE_BYTES


@given(st.lists(st.binary(max_size=50), max_size=8), st.data())
def test_unwritten_is_what_follows_the_written_bytes(buffers, data):
    whole = b"".join(buffers)
    written = data.draw(st.integers(0, len(whole)))
    rest = unwritten(list(buffers), written)
    assert b"".join(rest) == whole[written:]


def test_writing_a_list_in_uneven_pieces_writes_it_all():
    buffers: list = [b"head", memoryview(bytes(range(256)) * 40), b"", b"tail"]
    expected, out = b"".join(buffers), []
    while buffers:
        piece = b"".join(buffers)[:777]  # a sendmsg that takes at most 777 bytes
        out.append(piece)
        buffers = unwritten(buffers, len(piece))
    assert b"".join(out) == expected
