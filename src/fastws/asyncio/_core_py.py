"""The part of an asyncio WebSocket that runs for every read and every write.

``WebSocketCore`` is the base of ``fastws.asyncio.protocol.WebSocket``: the
loop's read callbacks (``get_buffer``/``buffer_updated``, and ``data_received``
for fastws's TLS layer), the hand-over of each message to a Listener or to ``recv()``
(and ``async for``), and the sends (``send``, and ``send_nowait`` and
``send_soon`` for callbacks) with their write batching. ``fan_out`` (one
prepared message queued on many connections) and the loop-wide write batch
run per message too, and live here. Everything else (the handshake, timers,
pings, closing) is in ``WebSocket``, and the core reaches it through ordinary
method calls.

Like ``Connection``, this module is written once in Python and also compiled
from this source by Cython (``_core_c.pxd`` makes ``WebSocketCore`` an
extension type whose fields are C struct members);
``fastws.codec.backend_module`` picks the compiled build with the compiled
codec. Between the loop's read and a Listener's callback, or the task of an
``async for`` loop, a message then crosses no interpreted frame of fastws.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterable
from typing import Any, Optional, TypeVar, Union

from ..connection import Connection, PreparedMessage, State
from ..exceptions import ConnectionClosed, ConnectionClosedOK
from ..frames import OP_CLOSE, OP_PONG, CloseCode
from ..policy import COALESCE_BYTES, ReadFlow, coalesce_writes

Message = Union[str, bytes]
_CLOSED = State.CLOSED  # a module global: an Enum member costs an attribute lookup through EnumType
W = TypeVar("W", bound="WebSocketCore")

CLIENT_REPLIES_PER_WRITE = 3
"""A client's Listener callbacks write their replies every this many messages
of one read (a server's leave in one write after the read). Measured with
``fastws bench`` pipelining 16 messages against fastws's server (2 cores, one
each): the first reply at once and the rest after the read gave 147-152k
echoes/s at 256 B and 111-149k at 8 KiB, each side idle a third of the time;
every reply at once 178-189k and 131-135k, the client's send syscalls its
bottleneck; every 2nd 225k and 157-165k; every 3rd 227-230k and 155-160k;
every 4th 190-196k and 167-172k. A large reply leaves at once (``_hold``)."""

IN_PLACE_BYTES = 64 * 1024
"""A large message's payload is read straight into its bytes object (no
copy) when at least this much of it is still to come; a shorter rest is
read together with what follows it, in one read."""


def write_buffers(transport: Any, buffers: list[Union[bytes, memoryview]], writelines: bool) -> None:
    """Write ``buffers`` in order: one ``writelines()`` where it is trusted
    (``writelines_trusted``), else a ``write()`` each."""
    if writelines:
        transport.writelines(buffers)
    else:
        for data in buffers:
            transport.write(data)


class _WriteBatch:
    """The connections of one event loop with writes held until the end of the
    current loop iteration: one callback writes them all, each connection's
    frames joined into one ``transport.write`` (up to COALESCE_BYTES; larger
    frames are written as they are), so fan-out and pipelining cost one
    syscall per connection per iteration, not one per message. It holds no
    reference to its loop, so a finished loop is freed with it."""

    __slots__ = ("dirty", "scheduled", "__weakref__")

    def __init__(self) -> None:
        self.dirty: list[WebSocketCore] = []
        self.scheduled = False

    def add(self, ws: WebSocketCore) -> None:
        self.dirty.append(ws)
        if not self.scheduled:
            self.scheduled = True
            ws.loop.call_soon(self.flush)  # type: ignore[attr-defined]  # WebSocket's

    def flush(self) -> None:
        self.scheduled = False
        dirty, self.dirty = self.dirty, []
        for ws in dirty:
            try:
                ws._flush()
            except Exception:  # one broken transport must not stall the others
                ws._write_failed()


def fan_out(websockets: Iterable[W], message: PreparedMessage) -> list[tuple[W, Exception]]:
    """Queue one prepared message on many connections, written at the end of
    this loop iteration (``send_soon`` for each, without a method call per
    connection: this is the inner loop of ``broadcast()`` and the relay; a
    large message waits for the end of the iteration too).

    Each connection's ``Connection.send_prepared`` decides, as for any frame;
    the connections it refuses are returned with its exception
    (ConnectionClosed: closing; RuntimeError: a fragmented message is being
    sent), never raised."""
    refused: list[tuple[W, Exception]] = []
    for ws in websockets:
        connection = ws.connection
        try:
            if connection is None:
                raise RuntimeError("the handshake is not finished")
            data = connection.send_prepared(message)
        except (ConnectionClosed, RuntimeError) as exc:
            refused.append((ws, exc))
            continue
        pending = ws._pending_writes
        pending.append(data)
        if len(pending) == 1 and not ws._corked:
            ws._batch.add(ws)
    return refused


class WebSocketCore:
    """The per-message state and methods of ``WebSocket`` (see the module's docstring).

    ``WebSocket.__init__`` sets every field; the methods named at the end are
    ``WebSocket``'s, which the core calls as any Python method."""

    __slots__ = (
        "connection",
        "transport",
        "listener",
        "is_client",
        "_pending_writes",
        "_corked",
        "_reading_in_place",
        "_receive_buffer",
        "_writelines",
        "_passthrough",
        "_keepalive",
        "_waiter",
        "_queue",
        "_batch",
        "_flow",
        "loop",
        "writing_paused",
        "_closed",
        "_fragments_done",
    )

    connection: Optional[Connection]
    transport: Any  # an asyncio.Transport (or uvloop's, which is not a subclass)
    listener: Any  # a Listener, or None
    is_client: bool
    _pending_writes: list[Union[bytes, memoryview]]
    _corked: bool
    _reading_in_place: bool
    _receive_buffer: memoryview
    _writelines: bool
    _passthrough: int
    _keepalive: Any
    _waiter: Any
    _queue: Optional[collections.deque[Message]]
    _batch: Any
    _flow: ReadFlow
    loop: asyncio.AbstractEventLoop
    writing_paused: bool
    _closed: asyncio.Future
    _fragments_done: Optional[asyncio.Future]

    def data_received(self, data: bytes) -> None:
        connection = self.connection
        if connection is None:
            self.handshake_data_received(data)
            return
        self._events_received(connection, connection.receive_data(data))

    def get_buffer(self, sizehint: int) -> memoryview:
        connection = self.connection
        if connection is not None:
            window = connection.receive_buffer(IN_PLACE_BYTES)
            if window is not None:
                self._reading_in_place = True
                return window
        self._reading_in_place = False  # uvloop may ask again without a read in between
        return self._receive_buffer

    def buffer_updated(self, nbytes: int) -> None:
        connection = self.connection
        if self._reading_in_place:
            self._reading_in_place = False
            assert connection is not None
            self._events_received(connection, connection.receive_into(nbytes))
        elif connection is None:
            self.handshake_data_received(bytes(self._receive_buffer[:nbytes]))
        else:
            self._events_received(connection, connection.receive_data(self._receive_buffer, nbytes))

    def _events_received(self, connection: Connection, events: list) -> None:
        """Hand one read's events to recv() or the Listener; write the replies they prompted in one go."""
        if self._keepalive is not None:
            self._keepalive.data_seen = True
        # Replies written while these events are handled leave in one write.
        self._corked = True
        try:
            failing = connection.error is not None
            if not failing:
                out = connection.data_to_send()  # pongs (held while writing is paused), a close reply
                if out:
                    self._pending_writes.append(out)
            if self.listener is not None:
                self._dispatch_to_listener(events)
            else:
                for frame in events:
                    opcode = frame.opcode
                    if opcode < OP_CLOSE:
                        self._deliver(frame.payload)
                    elif opcode == OP_PONG:
                        self._pong_received(frame.payload)
            if failing and not self._defer_failure(events):
                out = connection.data_to_send()  # the failure's close frame, after the replies
                if out:
                    self._pending_writes.append(out)
        finally:
            self._corked = False
            if self._pending_writes:
                self._flush()
        if connection.state is _CLOSED:
            self._protocol_closed()

    def _dispatch_to_listener(self, events: list) -> None:
        """Call the Listener for each event; its errors close the connection, never the loop.

        What the callbacks send is written in one go after the last event
        (``data_received`` corks), except on a client: there the replies leave
        every ``CLIENT_REPLIES_PER_WRITE`` messages. Large ones leave at once
        on either side (``_hold``). When both ends batch a
        read's replies into one write, a pipelined exchange falls into
        lock-step: each side idles while the other works through a whole batch,
        and waking an idle process costs more than the syscalls saved. Partial
        batches keep the server busy meanwhile; see ``CLIENT_REPLIES_PER_WRITE``."""
        listener = self.listener
        assert listener is not None
        on_message = listener.on_message
        every = CLIENT_REPLIES_PER_WRITE if self.is_client and len(events) > 1 else 0
        replied = 0
        for frame in events:
            opcode = frame.opcode
            try:
                if opcode < OP_CLOSE:
                    on_message(self, frame.payload)
                    if every:
                        replied += 1
                        if replied == every:
                            replied = 0
                            if self._pending_writes:
                                self._flush()
                elif opcode == OP_PONG:
                    self._pong_received(frame.payload)
                elif opcode != OP_CLOSE:
                    listener.on_ping(self, frame.payload)
            except ConnectionClosed:
                pass  # e.g. replying to a message that arrived together with a close frame
            except Exception:
                log = self.logger  # type: ignore[attr-defined]  # WebSocket's, as peer is ConnectionView's
                log.exception("%s listener callback failed; closing (1011)", self.peer)  # type: ignore[attr-defined]
                self._fail(CloseCode.INTERNAL_ERROR, "internal error")
                return

    def _deliver(self, message: Message) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done() and not self._queue:
            waiter.set_result(message)
            return
        queue = self._queue
        if queue is None:
            queue = self._queue = collections.deque()
        if self._flow.overflows(len(queue)):
            log = self.logger  # type: ignore[attr-defined]  # WebSocket's, as peer is ConnectionView's
            log.debug("%s message dropped: received after close() with a full queue", self.peer)  # type: ignore[attr-defined]
            return
        queue.append(message)
        if self._flow.after_put(len(queue)):
            self._update_reading()

    def _write(self, data: Union[bytes, memoryview]) -> None:
        """Write one frame, or hold it for the batch (``_hold``) while a read
        is handled (corked) or while received messages wait for ``recv()``."""
        if self._corked or self._queue:
            self._hold(data)
        elif self._pending_writes:
            self._pending_writes.append(data)
            self._flush()
        else:
            self.transport.write(data)

    def _hold(self, data: Union[bytes, memoryview]) -> None:
        """Hold a frame for the write at the end of the read or of this loop iteration.

        A frame of COALESCE_BYTES or more leaves at once, with what is held
        before it: joining it into a batch saves no syscall worth having, and
        the peer starts reading sooner. Measured pipelining 100 KiB echoes
        (16 in flight, picows' client, uvloop): a server holding the replies
        of each read (2-3 messages) for one write made 13-15k echoes/s with
        ``async for`` and 16-18k with a Listener, against picows' 21-25k;
        writing each at once, 20-22k and 21-24k. From 16 KiB to 32 KiB the
        batch still pays: flushing every 64 KiB cost 10-20% there. On
        asyncio's loop, where each large buffer is a write of its own anyway,
        nothing changes. A client's replies to a read also leave at once
        when large (against picows' server at 100 KiB on uvloop: 0.75-1.07x
        picows' client instead of 0.50-0.69x)."""
        pending = self._pending_writes
        pending.append(data)
        if len(data) >= COALESCE_BYTES:
            self._flush()
        elif len(pending) == 1 and not self._corked:
            self._batch.add(self)

    def _write_buffers(self, buffers: list[Union[bytes, memoryview]]) -> None:
        """``_write()`` for the buffers of one message (``Connection.send_buffers``):
        one ``writelines`` when nothing is waiting to be written before them."""
        if len(buffers) > 1 and self._writelines and not (self._corked or self._queue or self._pending_writes):
            self.transport.writelines(buffers)
        else:
            for data in buffers:
                self._write(data)

    def _flush(self) -> None:
        pending = self._pending_writes
        if not pending:
            return
        transport = self.transport
        if transport is None or transport.is_closing():
            pending.clear()
            return
        if len(pending) == 1:
            transport.write(pending[0])
        elif sum(map(len, pending)) <= COALESCE_BYTES:
            transport.write(b"".join(pending))
        else:
            write_buffers(transport, coalesce_writes(pending), self._writelines)
        pending.clear()

    async def recv(self) -> Message:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Raises ConnectionClosedOK/ConnectionClosedError once the connection is
        closed and every message received before has been returned."""
        queue = self._queue
        if queue:
            message = queue.popleft()
            if self._flow.after_get(len(queue)):
                self._update_reading()
            return message
        connection = self.connection
        if connection is not None and connection.error is not None:
            self._complete_failure()  # every message before the protocol error was returned
        if self._closed.done() or (connection is not None and connection.state is _CLOSED):
            raise self._close_exception()
        if self._pending_writes:
            self._flush()  # nothing more queued: send replies before waiting
        if self._waiter is not None:
            raise RuntimeError("recv() is already being awaited by another task")
        if self.listener is not None:
            raise RuntimeError("recv() is not available on a connection with a Listener")
        waiter = self._waiter = self.loop.create_future()
        try:
            return await waiter
        except asyncio.CancelledError:
            # Cancelled (a timeout, a task group) after the message was handed
            # over and before this task ran: put it back, first in line, so the
            # next recv() returns it. Nothing received is ever lost.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                queue = self._queue
                if queue is None:
                    queue = self._queue = collections.deque()
                queue.appendleft(waiter.result())
                if self._flow.after_put(len(queue)):
                    self._update_reading()
            raise
        finally:
            self._waiter = None

    def __aiter__(self: W) -> W:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.recv()
        except ConnectionClosedOK:
            raise StopAsyncIteration from None

    async def send(self, message: Message) -> None:
        """Send a message; wait while the write buffer is above ``write_limit``
        (and, first, until a fragmented message being sent is complete)."""
        if self.connection is None:
            raise RuntimeError("the handshake is not finished")
        if self._fragments_done is not None:
            await self._fragments_finished()
        if len(message) >= self._passthrough:
            self._write_buffers(self.connection.send_buffers(message))
        else:
            self._write(self.connection.send(message))
        if self.writing_paused:
            await self.drain()

    def send_nowait(self, message: Union[Message, PreparedMessage]) -> None:
        """Send a text (``str``) or binary message, or a ``PreparedMessage``,
        without waiting for the buffer to drain; for callbacks and fan-out.
        Raises ConnectionClosed if closed."""
        connection = self.connection
        if connection is None:
            raise RuntimeError("the handshake is not finished")
        if type(message) is PreparedMessage:
            self._write(connection.send_prepared(message))
        elif len(message) >= self._passthrough:  # type: ignore[arg-type]
            self._write_buffers(connection.send_buffers(message))  # type: ignore[arg-type]
        else:
            self._write(connection.send(message))  # type: ignore[arg-type]

    def send_soon(self, message: Union[Message, PreparedMessage]) -> None:
        """Like ``send_nowait()``, but written at the end of this event-loop
        iteration together with everything else sent to this connection
        meanwhile: one write per connection per iteration, for fan-out and
        pipelining. Order with other sends is kept. A frame of COALESCE_BYTES
        or more is written at once, with what is held before it."""
        connection = self.connection
        if connection is None:
            raise RuntimeError("the handshake is not finished")
        if type(message) is PreparedMessage:
            self._hold(connection.send_prepared(message))
        elif len(message) >= self._passthrough:  # type: ignore[arg-type]
            self._pending_writes += connection.send_buffers(message)  # type: ignore[arg-type]
            self._flush()  # large: as in _hold, it does not wait
        else:
            self._hold(connection.send(message))  # type: ignore[arg-type]

    # -- WebSocket's, called from above --------------------------------------

    def handshake_data_received(self, data: bytes) -> None:
        raise NotImplementedError

    def _pong_received(self, data: bytes) -> None:
        raise NotImplementedError

    def _defer_failure(self, events: list) -> bool:
        raise NotImplementedError

    def _fail(self, code: int, reason: str) -> None:
        raise NotImplementedError

    def _protocol_closed(self) -> None:
        raise NotImplementedError

    def _update_reading(self) -> None:
        raise NotImplementedError

    def _complete_failure(self) -> None:
        raise NotImplementedError

    def _close_exception(self) -> ConnectionClosed:
        raise NotImplementedError

    async def _fragments_finished(self) -> None:
        raise NotImplementedError

    async def drain(self) -> None:
        raise NotImplementedError

    def _write_failed(self) -> None:
        """A batched write raised: log it, drop what was held, abort."""
        raise NotImplementedError
