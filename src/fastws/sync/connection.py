"""A WebSocket connection on a blocking socket, shared by the threaded server and client.

Threads and locks, nothing else: no asyncio. The sans-I/O ``Connection`` does
every protocol rule; this class moves bytes.

Reading: one thread at a time reads the socket (``_read_lock``). A thread in
``recv()`` with nothing queued reads it itself, so a message costs no hand-over
between threads. Each connection also has a *reader thread*, which reads
whenever no ``recv()`` has for ``HANDOVER_DELAY`` (20 ms): pings and close
frames are answered even while the application does not call ``recv()``.
Messages it reads wait in a queue of ``max_queue``; when the queue is full,
nobody reads and TCP pushes back on the peer. The reader thread also runs
keepalive (it polls the socket until the next deadline), bounds a deferred
failure, and closes the socket at the end.

Writing: any thread may send. Every frame is encoded under ``_lock`` into the
*outbox*, and whoever holds ``_write_lock`` writes the outbox in order, so
frames leave in the order they were encoded (which permessage-deflate with
context takeover needs). A reader never waits for a slow writer: it leaves its
pongs and close replies to the thread writing (``_flush(wait=False)``). The
write timeout is the kernel's (``SO_SNDTIMEO``): a send that makes no progress
for ``write_timeout`` fails, and the connection is dropped. The close timeout
is enforced by ``close()`` itself.
"""

from __future__ import annotations

import collections
import logging
import os
import select
import socket
import ssl
import struct
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, Optional, Union

from ..connection import Connection, ConnectionView, State
from ..exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from ..frames import OP_CLOSE, OP_PONG, CloseCode
from ..limits import Limits
from ..policy import (
    Keepalive,
    PeerDead,
    ReadFlow,
    SendPing,
    TransportAction,
    coalesce_writes,
    passthrough_from,
    transport_action,
    unwritten,
)
from ..upgrade import ClientUpgrade, ServerUpgrade

__all__ = ["WebSocket", "Pong", "Message"]

_PASSTHROUGH_FROM = passthrough_from(writes_together=True)  # one sendmsg() for header and payload

Message = Union[str, bytes]
"""A received or sent message: ``str`` for text, ``bytes`` for binary."""

RECV_SIZE = 262144
"""Bytes asked of the socket per read: large messages arrive in few reads."""

SPARE_BUFFERS = 4
"""Read buffers kept for reuse by the whole process (``RECV_SIZE`` each)."""

HANDOVER_DELAY = 0.02
"""How long after a recv() caller stopped reading the reader thread takes
over the socket (a recv() that comes back sooner reads it itself). While
recv() keeps reading, the reader thread wakes once per HANDOVER_DELAY to
check: at 2 ms those wake-ups (and the GIL hand-offs they cause) were 3 of
the 4 context switches of a 1 MiB round trip; a ping waits at most this
long for its pong after the application stops calling recv()."""

logger = logging.getLogger("fastws")

_spare_buffers: list[bytearray] = []

_POLLIN = getattr(select, "POLLIN", 1) | getattr(select, "POLLHUP", 0) | getattr(select, "POLLERR", 0)


class Pong:
    """What ``ping()`` returns: ``wait(timeout)`` blocks until the pong arrives
    and returns the round-trip time in seconds (TimeoutError after
    ``timeout``; ConnectionClosed if the connection closes first)."""

    __slots__ = ("_event", "_sent", "latency", "_error")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._sent = time.perf_counter()
        self.latency: Optional[float] = None
        self._error: Optional[ConnectionClosed] = None

    def _set(self, now: float) -> None:
        self.latency = now - self._sent
        self._event.set()

    def _fail(self, error: ConnectionClosed) -> None:
        self._error = error
        self._event.set()

    @property
    def received(self) -> bool:
        return self.latency is not None

    def wait(self, timeout: Optional[float] = None) -> float:
        if not self._event.wait(timeout):
            raise TimeoutError(f"no pong within {timeout}s")
        if self._error is not None:
            raise self._error
        assert self.latency is not None
        return self.latency


def _send_timeout(seconds: float) -> bytes:
    """``SO_SNDTIMEO``'s value: a ``struct timeval`` (milliseconds on Windows)."""
    if sys.platform == "win32":
        return struct.pack("L", max(1, int(seconds * 1000)))
    whole = int(seconds)
    return struct.pack("ll", whole, max(0, int((seconds - whole) * 1_000_000)) or (0 if whole else 1))


class WebSocket(ConnectionView):
    """An open WebSocket connection on a blocking socket (server or client side).

    ``recv()`` may run in one thread while others ``send()``; ``close()`` from
    any thread. Received messages wait in a queue of ``max_queue``; when it is
    full the reader stops reading and TCP pushes back on the peer.
    """

    def __init__(self, sock: socket.socket, limits: Limits, *, is_client: bool, log: logging.Logger) -> None:
        self.socket = sock
        self.limits = limits
        self.is_client = is_client
        self.logger = log
        self.connection: Optional[Connection] = None
        self.subprotocol: Optional[str] = None
        self.extension: Any = None  # the negotiated extension session (permessage-deflate)
        try:
            self.remote_address: Any = sock.getpeername()
        except OSError:
            self.remote_address = None
        try:
            self._local_address: Any = sock.getsockname()
        except OSError:
            self._local_address = None
        self._id: Optional[uuid.UUID] = None
        self.latency = 0.0
        # _lock guards the sans-I/O Connection, the queue and the outbox; it is
        # held for microseconds, never across a socket call.
        self._lock = threading.Lock()
        self._message_ready = threading.Condition(self._lock)  # recv() waits here
        self._wake = threading.Condition(self._lock)  # the reader thread waits here (_background_turn)
        self._fragments_done = threading.Condition(self._lock)  # send() waits here during send_fragments()
        self._queue: collections.deque[Message] = collections.deque()
        self._flow = ReadFlow(limits.max_queue)
        self._receiving = False  # a thread is in recv()
        self._recv_waiting = False  # ... waiting for the reader thread to queue a message
        self._caller_reading = False  # ... reading the socket itself
        self._reader_parked = False  # the reader thread waits in _background_turn
        self._read_lock = threading.Lock()  # held by the one thread reading the socket
        self._last_read = 0.0  # when a recv() caller last stopped reading
        self._failure_deadline: Optional[float] = None  # a deferred failure completes by then
        self._fragmenter: Optional[int] = None  # the thread sending a fragmented message
        self._write_lock = threading.Lock()
        self._outbox: list[Union[bytes, memoryview]] = []
        # A server's large messages leave by reference (Connection.send_buffers,
        # one sendmsg) on a plain socket; TLS encrypts a copy anyway.
        self._passthrough = not is_client and hasattr(sock, "sendmsg") and not isinstance(sock, ssl.SSLSocket)
        # Bytes of pongs and close replies the reader queued since a writer
        # last took the outbox: above write_limit, a writer is stuck behind a
        # peer that does not read, and only the newest pong is kept.
        self._replies_waiting = 0
        self._pings: dict[bytes, Pong] = {}
        self._keepalive: Optional[Keepalive] = None
        self._abort_reason: Optional[str] = None
        self._aborted = False
        self._reader: Optional[threading.Thread] = None
        self._poller = _Poller(sock)
        self._closed = threading.Event()

    # -- properties -------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the socket is closed (the reader thread has finished)."""
        return self._closed.is_set()

    @property
    def local_address(self) -> Any:
        """This end's socket address (``(host, port)``, or a path for a Unix socket)."""
        return self._local_address

    @property
    def reading_paused(self) -> bool:
        """True while ``max_queue`` received messages wait for ``recv()``."""
        return self._flow.paused

    # -- opening ----------------------------------------------------------

    def _start(self, upgrade: Union[ServerUpgrade, ClientUpgrade]) -> None:
        """The handshake succeeded: start the Connection and the reader thread,
        which first parses what the peer sent after its head."""
        limits = self.limits
        self.subprotocol, self.extension = upgrade.subprotocol, upgrade.extension
        self.connection, early = upgrade.open(
            max_message_size=limits.max_message_size, max_frame_size=limits.max_frame_size
        )
        self.socket.settimeout(None)  # blocking: reads wait in the reader thread, writes in send()
        if limits.write_timeout is not None and hasattr(socket, "SO_SNDTIMEO"):
            try:
                self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _send_timeout(limits.write_timeout))
            except OSError:  # pragma: no cover - a platform without it: writes are unbounded
                self.logger.debug("SO_SNDTIMEO unavailable; write_timeout not enforced")
        if limits.ping_interval is not None:
            self._keepalive = Keepalive(limits.ping_interval, limits.ping_timeout, time.monotonic())
        name = f"fastws-reader-{self.peer}"
        self._reader = threading.Thread(target=self._read_loop, args=(early,), name=name, daemon=True)
        self._reader.start()

    # -- reading ------------------------------------------------------------
    #
    # One thread at a time reads the socket: whoever holds _read_lock. A
    # thread in recv() with nothing queued reads the socket itself (no
    # hand-over between threads on the hot path); the reader thread reads
    # whenever no recv() has been reading for HANDOVER_DELAY, so pings and
    # close frames are answered even while the application does not call
    # recv(). The reader thread also runs the timers (keepalive, a deferred
    # failure) and closes the socket at the end.

    def _read_loop(self, early: bytes) -> None:
        connection = self.connection
        assert connection is not None
        try:
            with self._read_lock:
                if early:
                    self._data_received(early)
                self._background_read()
            with self._lock:
                if self._recv_waiting:
                    self._message_ready.notify()
            while connection.state is not State.CLOSED and not self._aborted:
                if self._background_turn() and self._read_lock.acquire(False):
                    try:
                        self._background_read()
                    finally:
                        self._read_lock.release()
                        with self._lock:
                            if self._recv_waiting:  # it may read itself now
                                self._message_ready.notify()
            self._after_close()
        except OSError as exc:
            if self._abort_reason is None:
                self.logger.debug("%s connection lost: %s", self.peer, exc)
        except Exception:  # a bug: never leave the socket and the waiters hanging
            self.logger.exception("%s reader failed; aborting", self.peer)
            self._abort_reason = self._abort_reason or "internal error"
        finally:
            self._teardown()

    def _background_turn(self) -> bool:
        """Wait until the reader thread should read (True), or a timer is due
        (run here; False). Woken by ``_wake_reader``."""
        connection = self.connection
        assert connection is not None
        keepalive = self._keepalive
        with self._lock:
            if connection.state is State.CLOSED or self._aborted:
                return False
            now = time.monotonic()
            timeout = None
            if keepalive is not None and keepalive.deadline is not None and connection.state is State.OPEN:
                timeout = keepalive.deadline - now
                if timeout <= 0:
                    self._lock.release()
                    try:
                        self._keepalive_due()
                    finally:
                        self._lock.acquire()
                    return False
            if connection.failing:  # a deferred failure: recv() completes it, or we do after close_timeout
                assert self._failure_deadline is not None
                remaining = self._failure_deadline - now
                if remaining <= 0:
                    self._complete_failure()
                    self._lock.release()
                    try:
                        self._flush(wait=False)
                    finally:
                        self._lock.acquire()
                    return False
                timeout = remaining if timeout is None else min(timeout, remaining)
            elif self._flow.paused or self._caller_reading:
                pass  # woken when recv() makes room, or when it stops reading
            elif connection.state is State.OPEN and now - self._last_read < HANDOVER_DELAY:
                # Not parked: recv() callers do not wake us (one wake per
                # message would cost more than the hand-over saves).
                self._wake.wait(self._last_read + HANDOVER_DELAY - now)
                return False
            else:
                return True
            self._reader_parked = True
            self._wake.wait(timeout)
            self._reader_parked = False
            return False

    def _background_read(self) -> None:
        """Read (holding ``_read_lock``) until a recv() caller was served, the
        queue is full, or the connection closed; keepalive runs in between."""
        connection = self.connection
        assert connection is not None
        poller = self._poller
        while True:
            keepalive = self._keepalive
            if keepalive is not None and keepalive.deadline is not None:
                remaining = keepalive.deadline - time.monotonic()
                if remaining <= 0 or not poller.wait(remaining):
                    self._keepalive_due()
                    if connection.state is not State.OPEN:
                        return
                    continue
            else:
                poller.wait(None)
            served = self._recv_waiting
            if not self._read_once():
                return
            if served or self._flow.paused or connection.state is not State.OPEN or connection.failing:
                self._last_read = time.monotonic()  # a recv() caller is back: let it read
                return

    def _read_once(self) -> bool:
        """Read the readable socket once (holding ``_read_lock``) and parse
        what came; False at end of stream (recorded in the Connection).

        The bytes land in the payload of the large message they continue when
        the Connection offers it and at least RECV_SIZE are to come (no copy),
        else in a buffer reused across reads, taken only once the socket is
        readable: a fresh ``recv(RECV_SIZE)`` object is mmapped by malloc and
        costs new pages on every read, and a thread waiting for data holds no
        buffer (a server's idle connections cost none)."""
        connection = self.connection
        assert connection is not None
        with self._lock:
            window = connection.receive_buffer(RECV_SIZE)
        if window is not None:  # the rest of a large message goes straight into its payload
            with window:
                size = self.socket.recv_into(window)
            if size:
                self._data_received(size)
        else:
            buffer = _spare_buffers.pop() if _spare_buffers else bytearray(RECV_SIZE)
            try:
                size = self.socket.recv_into(buffer)
                if size:
                    self._data_received(memoryview(buffer)[:size])
            finally:
                if len(_spare_buffers) < SPARE_BUFFERS:
                    _spare_buffers.append(buffer)
        if not size:
            with self._lock:
                connection.receive_eof()
                self._message_ready.notify_all()
        return size > 0

    def _data_received(self, data: Union[bytes, memoryview, int]) -> None:
        """Parse received bytes (holding ``_read_lock``; an int: that many were
        read into the Connection's receive_buffer()): queue messages, answer
        pings and close frames, record pongs."""
        connection = self.connection
        assert connection is not None
        with self._lock:
            if self._keepalive is not None:
                self._keepalive.data_seen = True
            events = connection.receive_into(data) if isinstance(data, int) else connection.receive_data(data)
            failing = connection.error is not None
            if not failing:
                out = connection.data_to_send()  # pongs and a close reply, at once
                if out:
                    self._outbox.append(out)
                    self._replies_waiting += len(out)
                    if self._replies_waiting > self.limits.write_limit:
                        # Another thread's write is stuck: a ping flood from a
                        # peer that does not read costs one pong from now on,
                        # not a backlog (RFC 6455 §5.5.3: the newest suffices).
                        connection.writable = False
            queue = self._queue
            for frame in events:
                opcode = frame.opcode
                if opcode < OP_CLOSE:
                    if self._flow.overflows(len(queue)):
                        self.logger.debug("%s message dropped: received after close() with a full queue", self.peer)
                        continue
                    queue.append(frame.payload)
                    self._flow.after_put(len(queue))
                elif opcode == OP_PONG:
                    self._pong_received(frame.payload)
            if self._recv_waiting and (queue or connection.state is State.CLOSED or failing):
                self._message_ready.notify()
            if failing:
                # RFC 6455 §7.1.7, as the asyncio layer does it: messages that
                # came before the bad bytes are returned by recv() and its
                # replies sent before the failure's close frame; recv()
                # completes the failure once the queue is empty (or the
                # reader thread does after close_timeout).
                if not queue:
                    self._complete_failure()
                elif self._failure_deadline is None:
                    timeout = self.limits.close_timeout
                    self._failure_deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
            if connection.state is not State.OPEN or failing:
                self._wake_reader()
        if self._outbox:
            self._flush(wait=False)

    def _wake_reader(self) -> None:
        """Under ``_lock``: wake the reader thread if it waits for something."""
        if self._reader_parked:
            self._wake.notify()

    def _complete_failure(self) -> None:
        """Queue the failure's close frame (under ``_lock``); the state is then CLOSED."""
        connection = self.connection
        assert connection is not None
        if connection.failing:
            self._outbox.append(connection.data_to_send())
            self._message_ready.notify_all()
            self._wake_reader()

    def _after_close(self) -> None:
        """RFC 6455 §7.1.1: the server closes TCP now; the client waits for the
        server to (at most close_timeout). After a failure, linger: our side
        shut down, reading until the peer hangs up (a reset could destroy the
        close frame before the peer reads it)."""
        connection = self.connection
        assert connection is not None
        if connection.eof_received:
            return
        try:
            self._flush(wait=True)  # our close frame may wait behind another thread's write
        except ConnectionClosed:
            return
        action = transport_action(connection)
        with self._write_lock:  # and a write in flight in another thread ends first
            if action is TransportAction.CLOSE:
                return
            if action is TransportAction.LINGER:
                self.socket.shutdown(socket.SHUT_WR)
        timeout = self.limits.close_timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        # A recv() caller that saw the close lets go of the socket at once.
        if not self._read_lock.acquire(timeout=-1 if timeout is None else timeout):
            return
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and (remaining <= 0 or not self._poller.wait(remaining)):
                    self.logger.debug("%s peer did not close TCP within %ss", self.peer, timeout)
                    return
                if not self.socket.recv(RECV_SIZE):
                    return
        finally:
            self._read_lock.release()

    def _teardown(self) -> None:
        """The reader is done: close the socket, wake every waiter."""
        try:
            self.socket.shutdown(socket.SHUT_RDWR)  # also ends a write blocked on this socket
        except OSError:
            pass
        # No read or write may still use the descriptor when it is closed (the
        # shutdown above ends both at once; a bounded wait all the same).
        reading = self._read_lock.acquire(timeout=1.0)
        try:
            with self._write_lock:
                self.socket.close()
        finally:
            if reading:
                self._read_lock.release()
        with self._lock:
            if self.connection is not None:
                self.connection.receive_eof()
            error = self._close_exception()
            for pong in self._pings.values():
                pong._fail(error)
            self._pings.clear()
            self._message_ready.notify_all()
            self._fragments_done.notify_all()
        self._closed.set()
        self.connection_closed(error)

    def connection_closed(self, error: ConnectionClosed) -> None:
        """Hook for subclasses, run once in the reader thread when the socket is closed."""

    # -- keepalive (reader thread) ------------------------------------------

    def _keepalive_due(self) -> None:
        keepalive = self._keepalive
        connection = self.connection
        assert keepalive is not None and connection is not None
        with self._lock:
            if connection.state is not State.OPEN:
                keepalive.deadline = None
                return
            action = keepalive.on_timer(time.monotonic())
            if isinstance(action, SendPing):
                self._outbox.append(connection.send_ping(action.payload))
            elif isinstance(action, PeerDead):
                self.logger.info("%s no pong within %ss; closing (1011)", self.peer, self.limits.ping_timeout)
                self._outbox.append(connection.send_close(CloseCode.INTERNAL_ERROR, action.reason))
        self._flush(wait=False)
        if isinstance(action, PeerDead):
            self.abort(action.reason)  # a dead peer sends no close frame: do not wait for one

    def _pong_received(self, data: bytes) -> None:
        """Under ``_lock``: a pong answers the keepalive ping, or ours and every one sent before it."""
        keepalive = self._keepalive
        if keepalive is not None and keepalive.pong_received(data, time.monotonic()):
            self.latency = keepalive.latency
            return
        if data not in self._pings:
            return  # RFC 6455 §5.5.3: an unsolicited pong is allowed and ignored
        now = time.perf_counter()
        for key in list(self._pings):
            pong = self._pings.pop(key)
            pong._set(now)
            if key == data:
                self.latency = pong.latency or 0.0
                break

    # -- receiving ----------------------------------------------------------

    def recv(self, timeout: Optional[float] = None) -> Message:
        """The next message: ``str`` for text, ``bytes`` for binary.

        ``timeout`` (seconds) raises TimeoutError and loses nothing: the next
        call returns the message that was not taken. Raises
        ConnectionClosedOK/ConnectionClosedError once the connection is closed
        and every message received before has been returned."""
        connection = self.connection
        if connection is None:
            raise RuntimeError("the handshake is not finished")
        with self._lock:
            queue = self._queue
            if queue:
                message = queue.popleft()
                if self._flow.after_get(len(queue)):
                    self._wake_reader()
                return message
            if self._receiving:
                raise RuntimeError("recv() is already running in another thread")
            self._receiving = True
        try:
            return self._recv_wait(None if timeout is None else time.monotonic() + timeout, timeout)
        finally:
            self._receiving = False

    def _recv_wait(self, deadline: Optional[float], timeout: Optional[float]) -> Message:
        """recv() with an empty queue: read the socket here if no other thread
        does, else wait for the reader thread to queue a message."""
        connection = self.connection
        assert connection is not None
        queue = self._queue
        while True:
            with self._lock:
                if queue:
                    message = queue.popleft()
                    if self._flow.after_get(len(queue)):
                        self._wake_reader()
                    return message
                if connection.failing:
                    self._complete_failure()  # every message before the protocol error was returned
                if connection.state is State.CLOSED or self._closed.is_set() or self._aborted:
                    if self._outbox:
                        self._lock.release()
                        try:
                            self._flush(wait=False)  # a failure's close frame
                        finally:
                            self._lock.acquire()
                    raise self._close_exception()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"no message within {timeout}s")
                reading = not self._flow.paused and self._read_lock.acquire(False)
                if not reading:
                    self._recv_waiting = True
                    try:
                        self._message_ready.wait(remaining)
                    finally:
                        self._recv_waiting = False
                    continue
                self._caller_reading = True
            try:
                if not self._poller.wait(remaining):
                    continue
                try:
                    self._read_once()
                except OSError as exc:
                    self.logger.debug("%s connection lost: %s", self.peer, exc)
                    with self._lock:
                        connection.receive_eof()
            finally:
                with self._lock:
                    self._caller_reading = False
                    self._last_read = time.monotonic()
                    self._wake_reader()
                self._read_lock.release()

    def __iter__(self) -> Iterator[Message]:
        """Every message until the connection is closed normally (1000/1001);
        ConnectionClosedError if it closes otherwise."""
        try:
            while True:
                yield self.recv()
        except ConnectionClosedOK:
            return

    def _close_exception(self) -> ConnectionClosed:
        if self.connection is None:
            return ConnectionClosedError(CloseCode.ABNORMAL, "connection lost during the handshake")
        if self._abort_reason is not None and self.connection.close_received is None:
            return ConnectionClosedError(CloseCode.ABNORMAL, self._abort_reason)
        if self.connection.state is not State.CLOSED and self._closed.is_set():
            return ConnectionClosedError(CloseCode.ABNORMAL, "")
        return self.connection.close_exception()

    # -- sending ------------------------------------------------------------

    def send(self, message: Message) -> None:
        """Send a text (``str``) or binary message. Blocks while the socket's
        buffer is full; a peer that reads nothing for ``write_timeout`` is
        dropped (ConnectionClosedError). Waits first for a fragmented message
        that another thread is sending."""
        connection = self.connection
        if connection is None:
            raise RuntimeError("the handshake is not finished")
        with self._lock:
            if self._fragmenter is not None and self._fragmenter != threading.get_ident():
                self._wait_fragments()
            if self._passthrough and len(message) >= _PASSTHROUGH_FROM:
                self._outbox += connection.send_buffers(message)
            else:
                self._outbox.append(connection.send(message))
        self._flush()

    def send_fragments(self, fragments: Iterable[Message]) -> None:
        """Send one message from an iterable of ``str`` or ``bytes`` pieces, one
        frame each. Other threads' ``send()`` waits until it is complete (RFC
        6455 §5.4: no data frame inside a fragmented message). If the iterable
        raises mid-message, the connection is closed with 1011 rather than
        deliver a truncated message."""
        connection = self.connection
        if connection is None:
            raise RuntimeError("the handshake is not finished")
        me = threading.get_ident()
        with self._lock:
            if self._fragmenter == me:
                raise RuntimeError("send_fragments() is already running in this thread")
            if self._fragmenter is not None:
                self._wait_fragments()
            self._fragmenter = me
        previous: Optional[Message] = None
        try:
            for fragment in fragments:
                if previous is not None:
                    with self._lock:
                        self._outbox.append(connection.send_fragment(previous))
                    self._flush()
                previous = fragment
            if previous is None:
                raise ValueError("send_fragments() needs at least one fragment")
            with self._lock:
                self._outbox.append(connection.send_fragment(previous, fin=True))
        except BaseException:
            with self._lock:
                interrupted = connection.sending_fragments and connection.state is State.OPEN
                if interrupted:
                    self.logger.info("%s fragmented message interrupted; closing (1011)", self.peer)
                    self._outbox.append(
                        connection.send_close(CloseCode.INTERNAL_ERROR, "fragmented message interrupted")
                    )
                    if self._flow.closing():
                        self._wake_reader()
            raise
        finally:
            with self._lock:
                self._fragmenter = None
                self._fragments_done.notify_all()
            self._flush()

    def _wait_fragments(self) -> None:
        """Under ``_lock``: wait until another thread's fragmented message is complete."""
        while self._fragmenter is not None:
            if self._closed.is_set():
                raise self._close_exception()
            self._fragments_done.wait()

    def ping(self, data: Optional[bytes] = None) -> Pong:
        """Send a ping; ``ping().wait(timeout)`` waits for its pong and returns the
        round-trip time. A pong answers its ping and every one sent before it."""
        connection = self.connection
        if connection is None:
            raise RuntimeError("the handshake is not finished")
        with self._lock:
            if data is None:
                data = os.urandom(4)
                while data in self._pings:
                    data = os.urandom(4)
            elif data in self._pings:
                raise RuntimeError("already waiting for a pong with the same data")
            self._outbox.append(connection.send_ping(data))  # raises ConnectionClosed if closing
            pong = self._pings[data] = Pong()
        self._flush()
        return pong

    def _flush(self, wait: bool = True) -> None:
        """Write the outbox, in order. ``wait=False`` (the reader thread): if
        another thread is writing, leave the bytes to it: it writes until the
        outbox is empty and checks once more after letting go of the lock."""
        connection = self.connection
        assert connection is not None
        while self._outbox:
            if not self._write_lock.acquire(wait):
                return
            try:
                while True:
                    with self._lock:
                        connection.writable = True
                        self._replies_waiting = 0
                        if not connection.failing:
                            held = connection.data_to_send()  # a pong held back while we were writing
                            if held:
                                self._outbox.append(held)
                        outbox = self._outbox
                        if not outbox:
                            break
                        if len(outbox) == 1:
                            data: Union[bytes, memoryview, list[Union[bytes, memoryview]]] = outbox[0]
                        elif self._passthrough:
                            data = coalesce_writes(outbox)
                        else:
                            data = b"".join(outbox)
                        outbox.clear()
                    self._write(data, wait)
            finally:
                self._write_lock.release()

    def _write(self, data: Union[bytes, memoryview, list[Union[bytes, memoryview]]], raise_closed: bool) -> None:
        try:
            if type(data) is list:
                self._send_buffers(data)
            else:
                self.socket.sendall(data)  # type: ignore[arg-type]
        except OSError as exc:
            timed_out = isinstance(exc, (BlockingIOError, TimeoutError, ssl.SSLWantWriteError))
            if timed_out:
                self.logger.warning("%s read nothing for %ss; closing", self.peer, self.limits.write_timeout)
                self.abort("write timed out")
            else:
                self.abort(f"write failed: {exc}")
            with self._lock:
                self._outbox.clear()
            if raise_closed:
                raise self._close_exception() from exc

    def _send_buffers(self, buffers: list[Union[bytes, memoryview]]) -> None:
        """``sendall()`` for a list of buffers: ``sendmsg`` until all are written."""
        send = self.socket.sendmsg
        while buffers:
            buffers = unwritten(buffers, send(buffers))

    # -- closing ------------------------------------------------------------

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Start (or join) the close handshake and wait until the socket is
        closed, at most ``close_timeout`` (then it is dropped)."""
        self._start_close(code, reason)
        self.wait_closed(self.limits.close_timeout)
        if not self.closed:
            self.abort("close timed out")
            self.wait_closed()

    def _start_close(self, code: int, reason: str, wait: bool = True) -> None:
        connection = self.connection
        if connection is None:
            self.abort()
            return
        with self._lock:
            if connection.failing:
                self._complete_failure()
            elif connection.state is State.OPEN:
                self._outbox.append(connection.send_close(code, reason))
            self._flow.closing()  # the peer's close frame may be behind a full queue
            self._last_read = 0.0  # the reader thread reads from now on: the close reply must not wait
            self._wake_reader()
        try:
            self._flush(wait)
        except ConnectionClosed:
            pass

    def wait_closed(self, timeout: Optional[float] = None) -> bool:
        """Wait until the socket is closed; False if ``timeout`` passed first."""
        reader = self._reader
        if reader is None or reader is threading.current_thread():
            return self._closed.is_set()
        reader.join(timeout)
        return self._closed.is_set()

    def abort(self, reason: str = "") -> None:
        """Drop the connection at once; ``recv()`` then raises 1006 with ``reason``."""
        if reason and self._abort_reason is None:
            self._abort_reason = reason
        self._aborted = True
        with self._lock:
            self._wake_reader()
            self._message_ready.notify_all()
        try:
            self.socket.shutdown(socket.SHUT_RDWR)  # wakes the reader and a blocked write
        except OSError:
            pass
        if self._reader is None:
            self.socket.close()
            self._closed.set()

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Poller:
    """Wait until the socket is readable, for the reader's timers. A TLS socket
    may hold decrypted bytes the kernel does not know about: it is readable then."""

    __slots__ = ("sock", "poll", "pending")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = getattr(sock, "pending", None)
        if hasattr(select, "poll"):
            self.poll: Any = select.poll()
            self.poll.register(sock, _POLLIN)
        else:  # pragma: no cover - Windows
            self.poll = None

    def wait(self, timeout: Optional[float]) -> bool:
        """True once readable; False after ``timeout`` seconds (None: no limit)."""
        if self.pending is not None and self.pending():
            return True
        if self.poll is not None:
            return bool(self.poll.poll(-1 if timeout is None else max(0, int(timeout * 1000) + 1)))
        return bool(select.select([self.sock], [], [], timeout)[0])  # pragma: no cover
