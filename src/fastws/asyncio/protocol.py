"""The asyncio side of a WebSocket connection, shared by server and client.

``WebSocket`` is at once the protocol that the transport calls and the object
users hold, so one incoming chunk takes one path: ``data_received`` (or, on
uvloop, ``buffer_updated``) → sans-I/O ``Connection`` (codec in C) → message
handed to a waiting ``recv()`` or to a ``Listener`` callback. No streams, no
extra task per message, no copy between layers.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import time
import uuid
import weakref
from typing import TYPE_CHECKING, Any, Optional, Union

from ..codec import backend_module
from ..connection import Connection, ConnectionView, State
from ..exceptions import ConnectionClosed, ConnectionClosedError
from ..frames import OP_CLOSE, CloseCode
from ..limits import LimitOptions, Limits, unknown_keyword
from ..policy import (
    Keepalive,
    PeerDead,
    ReadFlow,
    SendPing,
    TransportAction,
    passthrough_from,
    transport_action,
)
from ..upgrade import ClientUpgrade, ServerUpgrade

# Defined with the per-message path, and used from here (tests, fastws.uvicorn).
from ._core_py import CLIENT_REPLIES_PER_WRITE as CLIENT_REPLIES_PER_WRITE
from ._core_py import IN_PLACE_BYTES as IN_PLACE_BYTES
from ._core_py import Message as Message
from ._core_py import write_buffers as write_buffers

if TYPE_CHECKING:  # one source: type-check it, whichever build runs
    from ._core_py import WebSocketCore, _WriteBatch, fan_out
else:
    _core = backend_module("asyncio._core")
    WebSocketCore, _WriteBatch, fan_out = _core.WebSocketCore, _core._WriteBatch, _core.fan_out

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["WebSocket", "Listener", "Limits", "LimitOptions", "unknown_keyword", "fan_out"]


logger = logging.getLogger("fastws")


_batches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _WriteBatch] = weakref.WeakKeyDictionary()


def writelines_trusted(transport: Any) -> bool:
    """Whether ``transport.writelines()`` may carry a message's buffers: only
    where it hands the list to the kernel as it is and pauses the protocol as
    ``write()`` does (uvloop). asyncio's own joins the list (3.11) or, in
    3.12.1 and 3.13.0, never pauses the protocol: a sender that never waits
    would buffer without bound. Elsewhere the buffers are written one by one."""
    writelines = getattr(type(transport), "writelines", None)
    return (
        writelines is not None
        and writelines is not asyncio.WriteTransport.writelines
        and not type(transport).__module__.startswith("asyncio.")
    )


def _write_batch(loop: asyncio.AbstractEventLoop) -> _WriteBatch:
    batch = _batches.get(loop)
    if batch is None:
        batch = _batches[loop] = _WriteBatch()
    return batch


class Listener:
    """Callback-level API: subclass it and pass ``listener=`` to serve/connect.

    Callbacks run inside the transport's read callback: no task, no queue, no future per
    message. Send with ``ws.send_nowait()``; watch ``ws.buffered_amount`` or
    ``await ws.drain()`` for backpressure.
    """

    __slots__ = ()  # subclasses may declare slots and stay small

    def on_open(self, ws: WebSocket) -> None:
        """The handshake is done."""

    def on_message(self, ws: WebSocket, message: Message) -> None:
        """A whole text (``str``) or binary (``bytes``) message arrived."""

    def on_ping(self, ws: WebSocket, payload: bytes) -> None:
        """A ping arrived (its pong is already queued)."""

    def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
        """The connection is closed; ``code`` is 1006 if it was lost abruptly."""


RECEIVE_BUFFER_SIZE = 256 * 1024
"""The size of each thread's shared receive buffer (see ``receive_buffer``)."""

_buffers = threading.local()


def receive_buffer() -> memoryview:
    """This thread's receive buffer, shared by the connections of its event
    loop (one per thread): what is read into it is parsed, or written into
    OpenSSL, before the next read. A fresh ``bytes`` per read would cost an
    allocation of up to this size each time, which glibc serves with an mmap
    of its own and its page faults."""
    view = getattr(_buffers, "view", None)
    if view is None:
        view = _buffers.view = memoryview(bytearray(RECEIVE_BUFFER_SIZE))
    return view


class WebSocket(ConnectionView, WebSocketCore, asyncio.BufferedProtocol):
    """An open WebSocket connection (server or client side).

    A ``BufferedProtocol``: every transport (uvloop's, asyncio's own,
    aiofastnet's) reads into a buffer it asks for with ``get_buffer()`` and
    reports with ``buffer_updated()``. Small reads go into a buffer shared by
    the loop's connections (``receive_buffer``); the rest of a large message
    is read straight into its payload (``Connection.receive_buffer``), with no
    copy into a ``bytes`` per read and none out of it. ``data_received()``
    stays for fastws's server TLS layer, which hands over decrypted bytes.

    asyncio's loop gives a plain ``Protocol`` a fresh 256 KiB ``bytes`` per
    read, which glibc serves with an mmap, a page fault per page written and
    an mremap and munmap after it (strace: three syscalls more per read).
    Pipelining 100 KiB echoes to a Listener server on asyncio's loop, that
    was 84 µs of server CPU per echo and 12k echoes/s against 32 µs and 31k
    read into buffers (glibc's default allocator settings; medians of 4 runs
    of ``bench/bench_trees.py``, docs/performance.md)."""

    logger: logging.Logger = logger
    """Where this connection logs; ``serve(logger=...)``/``connect(logger=...)`` choose another."""

    # Slots, not a per-instance dict: ~1.2 KiB less per connection. "__dict__"
    # stays for attributes an application (or fastws.auth) adds to a connection.
    __slots__ = (
        "extension",
        "latency",
        "limits",
        "remote_address",
        "subprotocol",
        "_abort_reason",
        "_drain_waiter",
        "_failure_deferred",
        "_id",
        "_keepalive_timer",
        "_pings",
        "_timer",
        "_write_stall",
        "__dict__",
        "__weakref__",
    )

    def __init__(self, limits: Limits, *, is_client: bool, listener: Optional[Listener] = None) -> None:
        self.limits = limits
        self.is_client = is_client
        self.listener = listener
        self.loop = asyncio.get_running_loop()
        self._batch = _write_batch(self.loop)
        self.transport: Any = None  # an asyncio.Transport (or uvloop's, which is not a subclass)
        self.connection: Optional[Connection] = None
        self.subprotocol: Optional[str] = None
        self.extension: Any = None  # the negotiated extension session (permessage-deflate)
        self.remote_address: Any = None
        self._id: Optional[uuid.UUID] = None
        # Received messages not yet recv()'d; created on first use (an empty
        # deque costs ~700 bytes, and most connections never queue anything).
        self._queue: Optional[collections.deque[Message]] = None
        self._waiter: Optional[asyncio.Future] = None  # recv()'s, while it waits
        # Writes are coalesced while received data is handled (_corked), while more
        # received messages wait in the queue, or when sent with send_soon(),
        # then flushed in one syscall (at the latest at the end of the loop
        # iteration, by the loop's _WriteBatch).
        self._pending_writes: list[Union[bytes, memoryview]] = []
        self._corked = False
        # Reads go into the loop's shared buffer, or a large payload's rest
        # straight into its bytes object (get_buffer).
        self._receive_buffer = receive_buffer()
        self._reading_in_place = False
        # A server's large messages are written by reference (header, then the
        # payload itself: Connection.send_buffers), with one writelines() where
        # the transport's is trusted (see connection_made), else a write each.
        self._writelines = False
        self._passthrough = passthrough_from(False)  # send_buffers() from this size
        self._flow = ReadFlow(limits.max_queue)  # pauses reading on a full receive queue
        # True while the write buffer is above ``write_limit`` (until the peer
        # reads it down); read it, do not set it. A plain attribute: fan-out
        # checks it once per subscriber per message.
        self.writing_paused = False
        self._write_stall: Optional[asyncio.TimerHandle] = None
        self._abort_reason: Optional[str] = None
        self._drain_waiter: Optional[asyncio.Future] = None
        self._fragments_done: Optional[asyncio.Future] = None  # set while send_fragments() runs
        self._failure_deferred = False  # a protocol error waits for recv() to return earlier messages
        self._closed: asyncio.Future = self.loop.create_future()
        self._pings: dict[bytes, tuple[asyncio.Future, float]] = {}
        self._timer: Optional[asyncio.TimerHandle] = None  # handshake/close deadline
        self._keepalive: Optional[Keepalive] = None
        self._keepalive_timer: Optional[asyncio.TimerHandle] = None
        self.latency = 0.0

    # -- properties -------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed.done()

    @property
    def buffered_amount(self) -> int:
        """Bytes written but not yet handed to the kernel (as in the browser API)."""
        pending = sum(map(len, self._pending_writes))
        return pending + (self.transport.get_write_buffer_size() if self.transport is not None else 0)

    @property
    def local_address(self) -> Any:
        """This end's socket address (``(host, port)``; a path for a Unix socket); None before connecting."""
        return None if self.transport is None else self.transport.get_extra_info("sockname")

    @property
    def reading_paused(self) -> bool:
        """True while ``max_queue`` received messages wait for ``recv()`` (TCP pushes back on the peer)."""
        return self._flow.paused

    # -- the transport's side (asyncio protocol callbacks) -----------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.remote_address = transport.get_extra_info("peername")
        self.transport.set_write_buffer_limits(high=self.limits.write_limit)
        self._writelines = writelines_trusted(transport)
        self._passthrough = passthrough_from(self._writelines)
        if self.limits.open_timeout is not None:
            self._timer = self.loop.call_later(self.limits.open_timeout, self._handshake_timeout)

    def _defer_failure(self, events: list) -> bool:
        """The peer broke the protocol after messages that recv() has not
        returned yet: let the handler take them and send its replies before
        the failure's close frame (bounded by close_timeout). True if deferred.
        A Listener has already seen every message by now."""
        connection = self.connection
        assert connection is not None
        if self.listener is not None or not connection.failing:
            return False
        if not self._failure_deferred:
            if not self._queue and not any(frame.opcode < OP_CLOSE for frame in events):
                return False
            self._failure_deferred = True
            if self._timer is not None:
                self._timer.cancel()
            timeout = self.limits.close_timeout
            self._timer = None if timeout is None else self.loop.call_later(timeout, self._complete_failure)
        return True

    def _complete_failure(self) -> None:
        """Send the close frame of a deferred failure and close TCP (RFC 6455 §7.1.7)."""
        connection = self.connection
        if connection is None or not connection.failing:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        out = connection.data_to_send()
        if out:
            self._write(out)
        self._protocol_closed()

    def _close_transport(self, linger: bool = False) -> None:
        """Close TCP. With ``linger`` (after failing a peer that may still be
        sending), shut down our side only and read until the peer hangs up or
        close_timeout passes: closing a socket with unread data sends a reset,
        which can destroy the close frame before the peer reads it."""
        self._flush()
        if linger and self.transport.can_write_eof() and not self.transport.is_closing():
            self.transport.write_eof()
            self._flow.closing()
            self._update_reading()
            self._arm_close_timer()
        else:
            self.transport.close()
            self._arm_close_timer()  # a peer that reads nothing would keep the close pending

    @property
    def lingering(self) -> bool:
        """Closed as a protocol, waiting only for the peer to hang up."""
        return self.connection is not None and self.connection.state is State.CLOSED and not self._closed.done()

    def _update_reading(self) -> None:
        """Read only while the receive queue is below max_queue: TCP then
        pushes back on the peer instead of memory growing."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._flow.paused:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def eof_received(self) -> bool:
        if self.connection is not None:
            self.connection.receive_eof()
        return False  # let the transport close itself

    def connection_lost(self, exc: Optional[Exception]) -> None:
        for handle in (self._timer, self._keepalive_timer, self._write_stall):
            if handle is not None:
                handle.cancel()
        self._timer = self._keepalive_timer = self._write_stall = None
        self.writing_paused = False  # a lost transport never resumes writing
        if self.connection is not None:
            self.connection.receive_eof()
            error = self._close_exception()
        else:
            error = ConnectionClosedError(CloseCode.ABNORMAL, "connection lost during the handshake")
        for future, _ in self._pings.values():
            if not future.done():
                future.set_exception(error)
        self._pings.clear()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(error)
        if not self._closed.done():
            self._closed.set_result(None)
        self.connection_closed(error)

    def connection_closed(self, error: ConnectionClosed) -> None:
        """Hook for subclasses, run once when the transport is gone."""
        if self.listener is not None and self.connection is not None:
            self.listener.on_close(self, error.code, error.reason)

    def pause_writing(self) -> None:
        """The write buffer passed write_limit. If the peer does not read it
        down within write_timeout, it is dropped: its backlog is bounded."""
        self.writing_paused = True
        if self.connection is not None:
            self.connection.writable = False
        if self.limits.write_timeout is not None and self._write_stall is None:
            self._write_stall = self.loop.call_later(self.limits.write_timeout, self._write_stalled)
        self._update_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self._write_stall is not None:
            self._write_stall.cancel()
            self._write_stall = None
        if self.connection is not None:
            self.connection.writable = True
            if not self._failure_deferred:  # else the failure's close frame would jump the replies
                out = self.connection.data_to_send()  # the pong held back while paused
                if out:
                    self._write(out)
        self._update_reading()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _write_failed(self) -> None:
        self.logger.exception("%s write failed; aborting", self.peer)
        self._pending_writes.clear()
        self.abort("write failed")

    def _write_stalled(self) -> None:
        self._write_stall = None
        self.logger.warning(
            "%s read nothing for %ss with %d bytes waiting; closing",
            self.peer,
            self.limits.write_timeout,
            self.buffered_amount,
        )
        self.abort("write timed out")

    # -- handshake (subclasses) ---------------------------------------------

    def _handshake_timeout(self) -> None:
        self._timer = None
        if self.connection is None and self.transport is not None:
            self.logger.info("%s handshake timed out after %ss", self.peer, self.limits.open_timeout)
            self.transport.abort()

    def open_connection(self, upgrade: Union[ServerUpgrade, ClientUpgrade]) -> None:
        """The handshake succeeded: start the WebSocket connection, then replay
        what the peer sent after its head."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.subprotocol, self.extension = upgrade.subprotocol, upgrade.extension
        self.connection, leftover = upgrade.open(
            max_message_size=self.limits.max_message_size, max_frame_size=self.limits.max_frame_size
        )
        if self.limits.ping_interval is not None:
            self._keepalive = Keepalive(self.limits.ping_interval, self.limits.ping_timeout, self.loop.time())
            self._arm_keepalive()
        if self.listener is not None:
            self.listener.on_open(self)
        if leftover:
            self.data_received(leftover)

    # -- receiving -------------------------------------------------------

    def _close_exception(self) -> ConnectionClosed:
        if self.connection is None:
            return ConnectionClosedError(CloseCode.ABNORMAL, "connection lost during the handshake")
        if self._abort_reason is not None and self.connection.close_received is None:
            return ConnectionClosedError(CloseCode.ABNORMAL, self._abort_reason)
        return self.connection.close_exception()

    # -- sending ---------------------------------------------------------

    async def send_fragments(self, fragments) -> None:
        """Send one message from an iterable (sync or async) of str or bytes pieces.

        ``send()`` and other ``send_fragments()`` calls wait until it is
        complete; ``send_nowait()``/``send_soon()`` raise RuntimeError meanwhile
        and ``broadcast()`` skips this connection (RFC 6455 §5.4: no data frame
        inside a fragmented message). If this is cancelled or the iterable
        raises mid-message, the message cannot be completed: the connection is
        closed with 1011 rather than deliver a truncated message."""
        connection = self.connection
        if connection is None:
            raise RuntimeError("the handshake is not finished")
        while self._fragments_done is not None:
            await self._fragments_finished()
        previous = None
        self._fragments_done = self.loop.create_future()
        try:
            if hasattr(fragments, "__aiter__"):
                async for fragment in fragments:
                    if previous is not None:
                        self._write(connection.send_fragment(previous))
                        await self.drain()
                    previous = fragment
            else:
                for fragment in fragments:
                    if previous is not None:
                        self._write(connection.send_fragment(previous))
                        await self.drain()
                    previous = fragment
            if previous is None:
                raise ValueError("send_fragments() needs at least one fragment")
            self._write(connection.send_fragment(previous, fin=True))
        except BaseException:
            if connection.sending_fragments and connection.state is State.OPEN:
                self.logger.info("%s fragmented message interrupted; closing (1011)", self.peer)
                self._fail(CloseCode.INTERNAL_ERROR, "fragmented message interrupted")
            raise
        finally:
            done, self._fragments_done = self._fragments_done, None
            done.set_result(None)
        await self.drain()

    async def _fragments_finished(self) -> None:
        """Wait until the fragmented message being sent is complete (or the connection closed)."""
        assert self._fragments_done is not None
        await asyncio.wait((self._fragments_done, self._closed), return_when=asyncio.FIRST_COMPLETED)
        if self._closed.done():
            raise self._close_exception()

    async def wait_sendable(self) -> None:
        """Wait until a message sent now would neither exceed ``write_limit``
        nor interrupt a fragmented message (relay backlogs wait on this)."""
        while True:
            if self._fragments_done is not None:
                await self._fragments_finished()
            elif self.writing_paused:
                await self.drain()
            else:
                if self._closed.done():
                    raise self._close_exception()
                return

    async def drain(self) -> None:
        """Wait until the write buffer is below ``write_limit``.

        A peer that reads nothing for ``write_timeout`` seconds is disconnected
        (its buffer would otherwise grow without bound)."""
        if self._closed.done():
            raise self._close_exception()
        if not self.writing_paused:
            return
        if self._drain_waiter is None or self._drain_waiter.done():
            self._drain_waiter = self.loop.create_future()
        # A stalled peer is dropped by the write_timeout timer, which ends this wait.
        await asyncio.shield(self._drain_waiter)

    async def ping(self, data: Optional[bytes] = None) -> float:
        """Send a ping and wait for its pong; return the round-trip time in seconds."""
        assert self.connection is not None
        if data is None:
            data = os.urandom(4)
            while data in self._pings:
                data = os.urandom(4)
        elif data in self._pings:
            raise RuntimeError("already waiting for a pong with the same data")
        frame = self.connection.send_ping(data)  # raises if the connection is closing
        future = self.loop.create_future()
        self._pings[data] = (future, time.perf_counter())
        self._write(frame)
        return await future

    def _pong_received(self, data: bytes) -> None:
        keepalive = self._keepalive
        if keepalive is not None and keepalive.pong_received(data, self.loop.time()):
            self.latency = keepalive.latency
            self._arm_keepalive()
            return
        if data not in self._pings:
            return  # RFC 6455 §5.5.3: an unsolicited pong is allowed and ignored
        now = time.perf_counter()
        # A pong answers its ping and every ping sent before it.
        for key in list(self._pings):
            future, sent = self._pings.pop(key)
            if not future.done():
                future.set_result(now - sent)
            if key == data:
                self.latency = now - sent
                break

    # -- keepalive ---------------------------------------------------------

    def _arm_keepalive(self) -> None:
        keepalive = self._keepalive
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
            self._keepalive_timer = None
        if keepalive is not None and keepalive.deadline is not None:
            self._keepalive_timer = self.loop.call_at(keepalive.deadline, self._keepalive_due)

    def _keepalive_due(self) -> None:
        """The keepalive deadline passed: ping, wait longer, or drop a dead peer."""
        self._keepalive_timer = None
        keepalive = self._keepalive
        if keepalive is None or not self.open:
            return
        action = keepalive.on_timer(self.loop.time())
        if isinstance(action, SendPing):
            assert self.connection is not None
            self._write(self.connection.send_ping(action.payload))
        elif isinstance(action, PeerDead):
            self.logger.info("%s no pong within %ss; closing (1011)", self.peer, self.limits.ping_timeout)
            self._fail(CloseCode.INTERNAL_ERROR, action.reason)
            return
        else:
            self.logger.debug("%s pong late; the peer is active or the loop was stalled: waiting longer", self.peer)
        self._arm_keepalive()

    # -- closing -----------------------------------------------------------

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Start (or join) the close handshake and wait until the connection is closed."""
        self._complete_failure()
        if self.connection is not None and self.connection.state is State.OPEN:
            self._write(self.connection.send_close(code, reason))
            self._arm_close_timer()
            if self._flow.closing():  # the peer's close frame is behind the full queue
                self._update_reading()
        elif self.connection is None and self.transport is not None:
            self.transport.close()
        await self.wait_closed()

    def close_nowait(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Send a close frame without waiting (for callbacks). A server then
        closes TCP at once (its writes are flushed first); a client waits for
        the server to close it, at most ``close_timeout``."""
        self._fail(code, reason)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    def _fail(self, code: int, reason: str) -> None:
        """Send a close frame and close the transport without waiting."""
        if self.connection is not None and self.connection.failing:
            self._complete_failure()  # the peer's error code wins; lingering has started
            return
        if self.connection is not None and self.connection.state is State.OPEN:
            self._write(self.connection.send_close(code, reason))
        self._arm_close_timer()
        if self.transport is not None and not self.is_client:
            self._close_transport()

    def abort(self, reason: str = "") -> None:
        """Drop the connection at once; the handler sees 1006 with ``reason``.
        What was sent before is handed to the transport first (it may be held
        back while a read is being handled), and leaves as far as the kernel
        takes it at once."""
        if reason and self._abort_reason is None:
            self._abort_reason = reason
        if self.transport is not None:
            self._flush()
            self.transport.abort()

    def _arm_close_timer(self) -> None:
        if self._timer is None and self.limits.close_timeout is not None:
            self._timer = self.loop.call_later(self.limits.close_timeout, self.abort)

    def _protocol_closed(self) -> None:
        """The sans-I/O connection reached CLOSED: close TCP as the policy says."""
        assert self.connection is not None
        action = transport_action(self.connection)
        if action is TransportAction.WAIT:
            self._arm_close_timer()  # client: wait for the server to close TCP
        else:
            self._close_transport(linger=action is TransportAction.LINGER)
        if self._waiter is not None and not self._waiter.done() and not self._queue:
            self._waiter.set_exception(self.connection.close_exception())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: Optional[type[BaseException]], *exc_info: object) -> None:
        """Leaving ``async with ws:`` closes the connection and waits for the close
        handshake: 1000, or 1011 when the block raised."""
        await self.close(CloseCode.NORMAL if exc_type is None else CloseCode.INTERNAL_ERROR)
