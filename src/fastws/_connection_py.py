"""The source of ``fastws.connection`` (import it from there; its docstring
shows how to drive a ``Connection``): the sans-I/O connection after the
handshake (RFC 6455 §5-§7), run as it is with the Python codec and compiled by
Cython, as ``fastws._connection_c`` typed by ``_connection_c.pxd``, with the
compiled one. It never imports asyncio.
"""

from __future__ import annotations

import enum
import uuid
from types import ModuleType
from typing import Any, Optional, Union

from . import codec as default_codec
from .codec import frame_buffers
from .exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, InvalidUTF8, ProtocolError
from .extensions.permessage_deflate import Deflate
from .frames import (
    MAX_FRAME_SIZE,
    MAX_MESSAGE_SIZE,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    CloseCode,
    build_close,
    parse_close,
)

__all__ = ["State", "Connection", "PreparedMessage", "ConnectionView", "PASSTHROUGH_BYTES"]

PASSTHROUGH_BYTES = 65536
"""From this size, ``Connection.send_buffers()`` hands a server's payload to the
I/O layer by reference instead of copying it into the frame. Worth it where the
layer writes the buffers together (``sendmsg``, a trusted ``writelines``);
where each buffer costs a write of its own, see
``fastws.policy.passthrough_from``."""


class State(enum.IntEnum):
    """Connection states (RFC 6455 §4, §7)."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


# Module globals for the per-message paths: ``State.OPEN`` is an attribute
# lookup through EnumType (and its ``__getattr__`` before Python 3.12).
_OPEN = State.OPEN
_CLOSED = State.CLOSED


class PreparedMessage:
    """A message encoded once, to be sent on many connections (broadcast, relay fan-out).

    Every server-side connection sends the same unmasked ``frames``. A
    client-side connection masks each frame with a fresh key (RFC 6455 §5.3),
    so it encodes ``message`` again; the gate (``Connection.send_prepared``)
    decides which, so an unmasked frame never leaves a client.

    Server connections with permessage-deflate share one compressed copy
    (``deflated()``): compressed on first use with a fresh LZ77 window, so it
    refers to nothing sent before it and any peer can inflate it, whatever
    context it keeps (RFC 7692 §7.2.3.1). One copy per server window size is
    kept (a copy compressed with a larger window than a peer allows would not
    be valid for it); a server whose connections all negotiate the same
    window, like the relay, compresses each message once.
    """

    __slots__ = ("message", "frames", "codec", "_deflated")

    def __init__(self, message: Union[str, bytes, bytearray, memoryview], codec: Optional[ModuleType] = None) -> None:
        if isinstance(message, (bytearray, memoryview)):
            message = bytes(message)  # frozen: the frames and the message must not drift apart
        self.message: Union[str, bytes] = message
        self.codec: ModuleType = codec or default_codec
        opcode = OP_TEXT if isinstance(message, str) else OP_BINARY
        self.frames: bytes = self.codec.encode_message(opcode, message)
        self._deflated: Optional[dict[int, bytes]] = None  # server window bits -> compressed frames

    def deflated(self, deflate: Deflate) -> bytes:
        """The frames of the message compressed for ``deflate``'s window (RSV1 set),
        compressed once per window size; ``frames`` if the session cannot compress
        or the message is under its threshold."""
        message = self.message
        if not deflate.compresses(len(message)):
            return self.frames
        bits = deflate.send_window_bits
        cache = self._deflated
        if cache is None:
            cache = self._deflated = {}
        frames = cache.get(bits)
        if frames is None:
            data = message.encode("utf-8") if isinstance(message, str) else message
            opcode = OP_TEXT if isinstance(message, str) else OP_BINARY
            frames = cache[bits] = self.codec.encode_message(opcode, deflate.compress_alone(data), rsv1=True)
        return frames

    def __repr__(self) -> str:
        kind = type(self.message).__name__
        compressed = f", compressed for windows {sorted(self._deflated)}" if self._deflated else ""
        return f"<PreparedMessage {kind} of {len(self.message)}, {len(self.frames)} bytes framed{compressed}>"


class Connection:
    """One side of an open WebSocket connection.

    ``max_message_size`` bounds an incoming message (``None``: no limit);
    ``max_frame_size`` is where outgoing messages are split into frames.
    ``codec`` selects a codec backend module (default: ``fastws.codec``).
    ``deflate`` is the negotiated permessage-deflate session, if any.
    """

    __slots__ = (
        "codec", "is_client", "max_frame_size", "max_message_size", "state", "deflate", "parser", "writable",
        "close_sent", "close_received", "eof_received", "error",
        "_encode_message", "_encode_frame", "_outgoing", "_pong", "_sending_fragments", "__weakref__",
    )  # fmt: skip

    def __init__(
        self,
        *,
        is_client: bool = False,
        max_message_size: Optional[int] = MAX_MESSAGE_SIZE,
        max_frame_size: int = MAX_FRAME_SIZE,
        codec: Optional[ModuleType] = None,
        state: State = State.OPEN,
        deflate: Optional[Deflate] = None,
    ) -> None:
        self.codec = codec or default_codec
        self.is_client = is_client
        self.max_frame_size = max_frame_size
        self.state = state
        self.max_message_size = max_message_size
        self.deflate = deflate
        # RFC 7692 §6: RSV1 marks a compressed message, valid only once negotiated.
        self.parser = self.codec.FrameParser(
            is_client=is_client, max_message_size=max_message_size, rsv1_allowed=deflate is not None
        )
        self._encode_message = self.codec.encode_message
        self._encode_frame = self.codec.encode_frame
        self._outgoing: list[bytes] = []
        # While the I/O layer cannot write (``writable`` False), pongs are not
        # queued: RFC 6455 §5.5.3 lets us answer only the newest ping, so a ping
        # flood from a peer that does not read costs one frame, not a backlog.
        self.writable = True
        self._pong: Optional[bytes] = None
        self._sending_fragments = 0  # opcode of a message being sent in fragments
        self.close_sent: Optional[tuple[int, str]] = None
        self.close_received: Optional[tuple[int, str]] = None
        self.error: Optional[ProtocolError] = None
        self.eof_received = False

    # -- receiving -------------------------------------------------------

    def _input_ignored(self) -> bool:
        """RFC 6455 §5.5.1: nothing is processed after a close frame (or once closed or failed)."""
        return self.state is _CLOSED or self.close_received is not None or self.error is not None

    def receive_data(self, data: Union[bytes, bytearray, memoryview], size: Optional[int] = None) -> list:
        """Parse received bytes (only the first ``size`` of ``data`` when
        given: a read into a larger buffer); return the events they complete."""
        if self._input_ignored():
            return []
        try:
            frames = self.parser.feed(data, size)
        except ProtocolError as exc:
            frames = self._parse_failed(exc)
        return self._frames_received(frames)

    def receive_buffer(self, min_size: int = 0) -> Optional[memoryview]:
        """A writable buffer for the next received bytes, when they can go
        straight into a large message's payload (see the codec's
        ``FrameParser.payload_buffer``) and at least ``min_size`` of them are
        to come; read into it, then call ``receive_into(n)``. None otherwise:
        use ``receive_data()``.

        An I/O layer passes the size of its own reads: a shorter rest of a
        frame is better read with what follows it, in one read, than alone."""
        window = self.parser.payload_buffer()  # None, most of the time: checked first
        if window is None or len(window) < min_size or self._input_ignored():
            return None
        return window

    def receive_into(self, size: int) -> list:
        """``size`` bytes were read into the last ``receive_buffer()``; return
        the events they complete, as ``receive_data()`` would."""
        if self._input_ignored():
            return []
        try:
            frames = self.parser.payload_received(size)
        except ProtocolError as exc:  # not raised by either codec today; handled as in receive_data
            frames = self._parse_failed(exc)
        return self._frames_received(frames)

    def _parse_failed(self, exc: ProtocolError) -> list:
        """Fail on the parser's error; return the whole frames that preceded
        the bad one, which are still delivered."""
        # Kept as ``error``, its traceback would keep the received data alive in
        # its frames: a view of an I/O layer's shared buffer, refilled by the next read.
        self._fail(exc.with_traceback(None))
        return exc.frames

    def _frames_received(self, frames: list) -> list:
        """Act on parsed frames: inflate, answer pings, handle a close."""
        for index, frame in enumerate(frames):
            opcode = frame.opcode
            if opcode < OP_CLOSE:
                if frame.rsv1:
                    try:
                        frames[index] = self._inflate(frame)
                    except ProtocolError as exc:
                        self._fail(exc)
                        return frames[:index]
                continue
            if opcode == OP_PING:
                if self.state is State.OPEN:
                    pong = self._encode_frame(OP_PONG, frame.payload, mask=self.is_client)
                    if self.writable:
                        self._outgoing.append(pong)
                    else:
                        self._pong = pong
            elif opcode == OP_CLOSE:
                return self._on_close(frames, frame)
        return frames

    def _inflate(self, frame):
        """Decompress a permessage-deflate message, bounded by max_message_size."""
        assert self.deflate is not None
        data = self.deflate.decompress(frame.payload, self.max_message_size)
        if frame.opcode == OP_TEXT:
            try:
                return self.codec.Frame(OP_TEXT, data.decode("utf-8"))
            except UnicodeDecodeError:
                raise InvalidUTF8("invalid UTF-8 in text message") from None
        return self.codec.Frame(OP_BINARY, data)

    def _on_close(self, frames: list, frame) -> list:
        if self.error is not None and self.state is State.OPEN:
            self.error = None  # the bad bytes came after the close frame: never processed (§5.5.1)
        self.close_received = parse_close(frame.payload)
        if self.state is State.OPEN:
            # RFC 6455 §5.5.1: answer with a close frame; echoing the code and
            # reason lets the peer (a browser's close event) see what it sent.
            code, reason = self.close_received
            self._send_close(None if code == CloseCode.NO_STATUS else code, reason)
        self.state = State.CLOSED
        # Frames after the close frame are discarded.
        return frames[: frames.index(frame) + 1]

    def _fail(self, exc: ProtocolError) -> None:
        """RFC 6455 §7.1.7: fail the connection: send a close frame, then close TCP.

        The close frame is not queued yet: the events before the error are
        returned as usual, and what the application sends in reply to them
        leaves first. The next ``data_to_send()`` (or ``send_close()``) adds
        the close frame; until then ``failing`` is True and the state OPEN."""
        self.error = exc
        if self.state is not State.OPEN:
            self.state = State.CLOSED  # our close frame is already out

    @property
    def failing(self) -> bool:
        """A protocol error was received; the failure's close frame is not sent yet."""
        return self.error is not None and self.state is State.OPEN

    def _send_failure(self) -> None:
        assert self.error is not None
        self._send_close(self.error.code, self.error.reason[:100])
        self.state = State.CLOSED

    def receive_eof(self) -> None:
        """The transport closed. Without a close handshake the close code is 1006."""
        self.eof_received = True
        self.state = State.CLOSED

    # -- state -----------------------------------------------------------

    @property
    def close_code(self) -> Optional[int]:
        """The code the peer closed with: 1005 for none, 1006 if the transport just
        dropped; ``None`` while open. After a protocol error, the code we send
        (as soon as the error is found, while ``failing`` too)."""
        if self.error is not None:
            return self.error.code
        if self.state is not State.CLOSED:
            return None
        if self.close_received is not None:
            return self.close_received[0]
        return CloseCode.ABNORMAL

    @property
    def close_reason(self) -> str:
        if self.error is not None:
            return self.error.reason
        if self.close_received is not None:
            return self.close_received[1]
        return ""

    def close_exception(self) -> ConnectionClosed:
        """The exception to raise to users once the connection is closed."""
        code = self.close_code
        if code is None:
            code = CloseCode.ABNORMAL
        # A close frame without a code (1005) ends a connection as cleanly as
        # 1000 does: RFC 6455 §7.1.5 lets a peer close with an empty payload.
        if code in (CloseCode.NORMAL, CloseCode.GOING_AWAY, CloseCode.NO_STATUS) and self.error is None:
            return ConnectionClosedOK(code, self.close_reason)
        return ConnectionClosedError(code, self.close_reason)

    @property
    def should_close_transport(self) -> bool:
        """True once the TCP connection should be closed by this side.

        RFC 6455 §7.1.1: the server closes TCP first once the close handshake is
        done; the client waits for the server to do it (the I/O layer closes it
        anyway after a timeout). After a protocol error, either side closes."""
        if self.state is not State.CLOSED:
            return False
        return not self.is_client or self.error is not None or self.eof_received

    @property
    def buffered(self) -> int:
        """Bytes of partial frames or messages held by the parser."""
        return self.parser.buffered

    # -- sending ---------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes the connection produced on its own (pongs, close replies).

        I/O layers write this whenever it is not empty, even while their
        transport is above its write limit: a close reply must not wait, and
        the pongs are held back here (``writable``), not by the caller. After a
        protocol error, this is where the failure's close frame is sent."""
        if self.error is not None and self.state is _OPEN:
            self._send_failure()
        pong = None
        if self.writable:  # else the newest pong waits; close frames always leave
            pong, self._pong = self._pong, None
        if not self._outgoing:
            return pong or b""
        data = b"".join(self._outgoing)
        self._outgoing.clear()
        return pong + data if pong else data

    def _check_open(self) -> None:
        if self.state is not State.OPEN:
            raise (
                self.close_exception()
                if self.state is State.CLOSED
                else ConnectionClosedOK(*(self.close_sent or (CloseCode.NORMAL, "")))
            )

    def send(self, message: Union[str, bytes, bytearray, memoryview]) -> bytes:
        """Encode a text (``str``) or binary message, fragmented at ``max_frame_size``."""
        if self.state is not _OPEN or self._sending_fragments:
            self._check_open()
            raise RuntimeError("a fragmented message is being sent; finish it with send_fragment(..., fin=True)")
        opcode = OP_TEXT if isinstance(message, str) else OP_BINARY
        deflate = self.deflate
        if deflate is None:
            return self._encode_message(opcode, message, mask=self.is_client, max_frame_size=self.max_frame_size)
        if deflate.compresses(len(message)):
            data = message.encode("utf-8") if isinstance(message, str) else message
            return self._encode_message(
                opcode, deflate.compress(data), mask=self.is_client, max_frame_size=self.max_frame_size, rsv1=True
            )
        return self._encode_message(opcode, message, mask=self.is_client, max_frame_size=self.max_frame_size)

    def send_buffers(self, message: Union[str, bytes]) -> list[Union[bytes, memoryview]]:
        """Like ``send()``, as a list of buffers to write in order (one
        ``writelines``/``sendmsg``): a server's ``bytes`` or ``str`` message of
        PASSTHROUGH_BYTES or more is not copied into its frames; the list holds
        each frame's header and the payload itself (see ``frame_buffers``).
        Anything else, and every frame a client sends (it masks a copy), is
        one buffer: ``send()``'s bytes. A bytearray or memoryview is always
        copied: it could change before the transport has written it."""
        kind = type(message)
        if (
            self.is_client
            or (kind is not bytes and kind is not str)
            or len(message) < PASSTHROUGH_BYTES
            or self.state is not _OPEN
            or self._sending_fragments
        ):
            return [self.send(message)]  # raises what send() raises when closing or mid-fragment
        if isinstance(message, str):
            opcode, data = OP_TEXT, message.encode("utf-8")
        else:
            opcode, data = OP_BINARY, message
        deflate = self.deflate
        if deflate is not None and deflate.compresses(len(message)):
            return frame_buffers(opcode, deflate.compress(data), max_frame_size=self.max_frame_size, rsv1=True)
        return frame_buffers(opcode, data, max_frame_size=self.max_frame_size)

    def send_prepared(self, prepared: PreparedMessage) -> bytes:
        """The frames of a message encoded once for many connections.

        Refused like ``send()`` while closing or while a fragmented message is
        being sent (a data frame may not interrupt one, RFC 6455 §5.4). A
        client encodes (and compresses) its own masked copy. A server shares
        ``prepared.frames``, or with permessage-deflate the compressed copy
        ``prepared.deflated()`` made once for every connection with the same
        window. With server context takeover, that copy is valid too (it
        refers to nothing before it), but the connection's own compressor is
        reset after it: the peer's window now holds a message our compressor
        never saw, so its next message starts afresh."""
        if self.state is _OPEN and not self._sending_fragments and not self.is_client:
            deflate = self.deflate
            if deflate is None:
                return prepared.frames
            frames = prepared.deflated(deflate)
            if frames is not prepared.frames and not deflate.send_reset:
                # The peer's window now holds this message, which our own
                # compressor never saw: its next message must not refer back
                # to what came before (RFC 7692 lets a sender reset at will).
                deflate.reset_compressor()
            return frames
        # A client masks every frame with a key of its own: it encodes its own
        # copy. send() also raises what it would while closing or mid-fragment.
        return self.send(prepared.message)

    @property
    def sending_fragments(self) -> bool:
        """True between the first and the last frame of ``send_fragment()``."""
        return self._sending_fragments != 0

    def send_text(self, text: str) -> bytes:
        return self.send(text)

    def send_binary(self, data: Union[bytes, bytearray, memoryview]) -> bytes:
        return self.send(data)

    def send_fragment(self, data: Union[str, bytes], fin: bool = False) -> bytes:
        """Stream a message frame by frame: the first call sets the type, ``fin``
        ends the message. Control frames may be sent between fragments."""
        self._check_open()
        first = not self._sending_fragments
        opcode = (OP_TEXT if isinstance(data, str) else OP_BINARY) if first else OP_CONT
        frame = self._encode_frame(opcode, data, fin=fin, mask=self.is_client)  # may raise: state unchanged
        self._sending_fragments = 0 if fin else (opcode if first else self._sending_fragments)
        return frame

    def send_ping(self, payload: bytes = b"") -> bytes:
        self._check_open()
        if self.deflate is not None:
            # Pings mark time (keepalive sends one every ping_interval): a
            # compressor idle since the previous ping gives its memory back.
            self.deflate.release_if_idle()
        return self._encode_frame(OP_PING, payload, mask=self.is_client)

    def send_pong(self, payload: bytes = b"") -> bytes:
        self._check_open()
        return self._encode_frame(OP_PONG, payload, mask=self.is_client)

    def send_close(self, code: Optional[int] = CloseCode.NORMAL, reason: str = "") -> bytes:
        """Start the close handshake; the state becomes CLOSING until the peer answers.
        After a protocol error, the failure's close code is sent instead."""
        if self.state is not State.OPEN:
            return b""
        if self.error is not None:
            return self.data_to_send()
        self._send_close(code, reason)
        return self.data_to_send()

    def _send_close(self, code: Optional[int], reason: str) -> None:
        self._outgoing.append(self._encode_frame(OP_CLOSE, build_close(code, reason), mask=self.is_client))
        self.close_sent = (CloseCode.NO_STATUS if code is None else code, reason)
        self.state = State.CLOSING
        self._pong = None  # a pong held back is obsolete: nothing follows our close frame


class ConnectionView:
    """What every I/O layer's connection object shows of its ``Connection``
    and socket, written once: ``state``, ``open``, ``close_code``,
    ``close_reason``, ``id`` and ``peer``. The layer sets ``connection`` (None
    until the handshake is done), ``remote_address``, ``_id = None`` and
    provides ``local_address``."""

    __slots__ = ()  # a layer's connection may use slots (the asyncio one does)

    connection: Optional[Connection]
    remote_address: Any
    _id: Optional[uuid.UUID]

    @property
    def local_address(self) -> Any:  # overridden by each layer
        return None

    @property
    def state(self) -> State:
        return State.CONNECTING if self.connection is None else self.connection.state

    @property
    def open(self) -> bool:
        return self.connection is not None and self.connection.state is State.OPEN

    @property
    def close_code(self) -> Optional[int]:
        return None if self.connection is None else self.connection.close_code

    @property
    def close_reason(self) -> str:
        return "" if self.connection is None else self.connection.close_reason

    @property
    def id(self) -> uuid.UUID:
        """A random identifier for this connection, for logs and registries (made on first use)."""
        if self._id is None:
            self._id = uuid.uuid4()  # type: ignore[misc]  # a slot or attribute of the layer's class
        return self._id

    @property
    def peer(self) -> str:
        """The remote address as log lines show it: ``host:port``, or ``unix:PATH``
        for a Unix socket (whose client end has no name: the server's path is shown)."""
        address = self.remote_address
        if isinstance(address, tuple) and len(address) >= 2:
            return f"{address[0]}:{address[1]}"
        if isinstance(address, str):  # AF_UNIX
            return f"unix:{address or self.local_address or ''}"
        return str(address)
