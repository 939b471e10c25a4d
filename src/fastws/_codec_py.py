"""The pure-Python codec: the twin of ``_codec.pyx``, with the same interface
(``_codec.pyi``) and the same behaviour byte for byte and error for error.

It is used when the extension is not built or ``FASTWS_CODEC=python`` is set.
No byte loop runs in Python. Unmasking uses big-integer XOR, in 4 KiB chunks
from 8 KiB; between 1.5 and 256 KiB, four strided slices mapped through XOR
tables by ``bytes.translate`` instead, where this CPU runs them faster (timed
once at import: see ``_translate_is_faster``). A whole unfragmented data
frame already in the fed bytes takes a fast path that keeps no parser state
and is validated with ``bytes.decode``; anything else (partial frames,
fragments, control frames, bad frames) takes the general path, which raises
every error, and validates text incrementally with the standard decoder.
"""

from __future__ import annotations

import codecs
import os
import struct
from operator import attrgetter as _attrgetter
from time import perf_counter as _perf_counter

from ._rules import MAX_CONTROL_PAYLOAD as _MAX_CONTROL_PAYLOAD
from ._rules import MAX_FRAME_SIZE as _MAX_FRAME_SIZE
from ._rules import MAX_MESSAGE_SIZE as _MAX_MESSAGE_SIZE
from ._rules import OP_BINARY as _OP_BINARY
from ._rules import OP_CLOSE as _OP_CLOSE
from ._rules import OP_CONT as _OP_CONT
from ._rules import OP_TEXT as _OP_TEXT
from ._rules import OPCODES as _OPCODES
from ._rules import bytes_arg as _bytes_arg
from ._rules import bytes_prefix_arg as _bytes_prefix_arg
from ._rules import frame_header as _frame_header
from ._rules import frame_size_arg as _frame_size_arg
from ._rules import index_arg as _index_arg
from ._rules import limit_arg as _limit_arg
from ._rules import mask_arg as _mask_arg
from ._rules import opcode_arg as _opcode_arg
from ._rules import payload_arg as _payload_arg
from ._rules import payload_goes_direct as _payload_goes_direct
from ._rules import writable_arg as _writable_arg
from .exceptions import InvalidUTF8, MessageTooBig, ProtocolError
from .frames import parse_close

__all__ = ["apply_mask", "apply_mask_inplace", "Frame", "FrameParser", "encode_frame", "encode_message"]

_KNOWN_OPCODES = frozenset(_OPCODES)
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")
_Utf8Decoder = codecs.getincrementaldecoder("utf-8")
_MASK_CHUNK = 4096
# Payload sizes unmasked with bytes.translate where it is faster (_translate_is_faster).
_TRANSLATE_MIN = 1536
_TRANSLATE_MAX = 256 * 1024
_XOR_TABLES = [bytes(i ^ k for i in range(256)) for k in range(256)]
_from_bytes = int.from_bytes
_MAX_LEGAL_LENGTH = 2**63 - 1  # RFC 6455 §5.2: the most significant bit must be 0
# First header bytes the parser's fast path takes: FIN, no RSV2/RSV3, text or binary;
# with RSV1 as well once an extension (permessage-deflate) allows it.
_FAST_FIRSTS = frozenset((0x80 | _OP_TEXT, 0x80 | _OP_BINARY))
_FAST_FIRSTS_RSV1 = _FAST_FIRSTS | {0xC0 | _OP_TEXT, 0xC0 | _OP_BINARY}


def apply_mask(data, mask) -> bytes:
    if type(data) is not bytes:
        data = _bytes_arg(data, "data")
    return _mask(data, mask if type(mask) is bytes and len(mask) == 4 else _mask_arg(mask, "mask"))


def apply_mask_inplace(buffer, mask) -> None:
    view = _writable_arg(buffer)
    key = mask if type(mask) is bytes and len(mask) == 4 else _mask_arg(mask, "mask")
    view[:] = _mask(view, key)


def _mask(data, mask: bytes) -> bytes:
    """XOR the bytes of ``data`` (bytes or a byte view) with the 4-byte key ``mask``."""
    n = len(data)
    if n < _TRANSLATE_MIN:
        return _xor_int(data, mask) if n else b""
    return _unmask(data, 0, n, mask)


def _unmask(data, start: int, n: int, mask: bytes) -> bytes:
    """``data[start:start + n]`` (bytes or a byte view) XOR-ed with ``mask``, for n >= _TRANSLATE_MIN."""
    if _TRANSLATE_FASTER and n <= _TRANSLATE_MAX:
        return _xor_translate(data, start, n, mask)
    return _xor_chunks(data, start, n, mask)


def _xor_int(data, mask: bytes) -> bytes:
    """``data`` (not empty) XOR-ed with ``mask`` as one big-integer round trip."""
    n = len(data)
    return (_from_bytes(data, "little") ^ _from_bytes((mask * ((n >> 2) + 1))[:n], "little")).to_bytes(n, "little")


def _xor_chunks(data, start: int, n: int, mask: bytes) -> bytes:
    """``data[start:start + n]`` XOR-ed with ``mask`` by big integers of
    _MASK_CHUNK bytes: their XOR slows down on very long numbers (a multiple
    of 4, so every chunk starts at key byte 0)."""
    view = memoryview(data).cast("B")[start : start + n]
    if n < 2 * _MASK_CHUNK:
        return _xor_int(view, mask)
    chunk_key = _from_bytes(mask * (_MASK_CHUNK >> 2), "little")
    parts = [
        (_from_bytes(view[offset : offset + _MASK_CHUNK], "little") ^ chunk_key).to_bytes(_MASK_CHUNK, "little")
        for offset in range(0, n - _MASK_CHUNK + 1, _MASK_CHUNK)
    ]
    tail = n % _MASK_CHUNK
    if tail:
        parts.append(_xor_int(view[n - tail :], mask))
    return b"".join(parts)


def _xor_translate(data, start: int, n: int, mask: bytes) -> bytes:
    """``data[start:start + n]`` XOR-ed with ``mask`` without big integers.

    Byte ``i`` of the key applies to every fourth byte: four strided slices,
    each mapped through a 256-byte XOR table by ``bytes.translate`` and
    written back into place."""
    if type(data) is not bytes:
        data = bytes(data)  # a view has no translate()
    stop = start + n
    out = bytearray(n)
    out[0::4] = data[start:stop:4].translate(_XOR_TABLES[mask[0]])
    out[1::4] = data[start + 1 : stop : 4].translate(_XOR_TABLES[mask[1]])
    out[2::4] = data[start + 2 : stop : 4].translate(_XOR_TABLES[mask[2]])
    out[3::4] = data[start + 3 : stop : 4].translate(_XOR_TABLES[mask[3]])
    return bytes(out)


def _translate_is_faster() -> bool:
    """Whether ``_xor_translate`` beats ``_xor_chunks`` on this CPU (both
    return the same bytes). Which one wins depends on the processor: on a
    2-core Intel Xeon the strided translate took about half the big-integer
    time at 1.5-256 KiB, on a 2-core AMD EPYC about twice (16 KiB: 53 µs
    against 30; 64 KiB: 250 against 109; CPython 3.11). Timed once, on
    16 KiB, best of 5 in turns: about half a millisecond."""
    sample = bytes(range(256)) * 64
    key = b"\x9e\x37\x79\xb9"
    best = {_xor_translate: float("inf"), _xor_chunks: float("inf")}
    for _ in range(5):
        for method in best:
            started = _perf_counter()
            method(sample, 0, len(sample), key)
            best[method] = min(best[method], _perf_counter() - started)
    return best[_xor_translate] < best[_xor_chunks]


_TRANSLATE_FASTER = _translate_is_faster()


def _rotate(mask: bytes, phase: int) -> bytes:
    return mask[phase:] + mask[:phase] if phase else mask


class Frame:
    __slots__ = ("_opcode", "payload", "_fin", "_rsv1")

    def __init__(self, opcode: int, payload, fin: bool = True, rsv1: bool = False) -> None:
        self._opcode = opcode if type(opcode) is int and opcode in _KNOWN_OPCODES else _opcode_arg(opcode)
        self.payload = payload
        self._fin = True if fin else False
        self._rsv1 = True if rsv1 else False

    # Assignments follow the constructor's rules (as in the compiled codec).
    def _set_opcode(self, value) -> None:
        self._opcode = _opcode_arg(value)

    def _set_fin(self, value) -> None:
        self._fin = True if value else False

    def _set_rsv1(self, value) -> None:
        self._rsv1 = True if value else False

    opcode = property(_attrgetter("_opcode"), _set_opcode)
    fin = property(_attrgetter("_fin"), _set_fin)
    rsv1 = property(_attrgetter("_rsv1"), _set_rsv1)

    def __eq__(self, other: object) -> bool:
        # Duck-typed so that frames of the two backends compare by their fields.
        try:
            return (
                self.opcode == other.opcode  # type: ignore[attr-defined]
                and self.fin == other.fin  # type: ignore[attr-defined]
                and self.rsv1 == other.rsv1  # type: ignore[attr-defined]
                and type(self.payload) is type(other.payload)  # type: ignore[attr-defined]
                and self.payload == other.payload  # type: ignore[attr-defined]
            )
        except AttributeError:
            return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        payload = self.payload
        shown = repr(payload[:60]) + ("..." if len(payload) > 60 else "")
        return f"Frame(opcode={self.opcode}, payload={shown}, fin={self.fin}, rsv1={self.rsv1})"


_new_frame = object.__new__
_U32LE = struct.Struct("<I")
# 0x…0000000100000001 with ``words`` ones, by ``words``: a few recent payload
# sizes below _TRANSLATE_MIN (at most 64 numbers of at most 1.5 KiB).
_ONES: dict[int, int] = {}


def _ones(words: int) -> int:
    if len(_ONES) >= 64:
        _ONES.clear()
    ones = _ONES[words] = _from_bytes(b"\x01\x00\x00\x00" * words, "little")
    return ones


class FrameParser:
    __slots__ = (
        "_assemble",
        "_error",
        "_fast_limit",
        "_fin",
        "_frame_chunks",
        "_frame_size",
        "_header",
        "_in_frame",
        "_is_client",
        "_mask",
        "_mask_phase",
        "_max_frame_size",
        "_max_message_size",
        "_message_chunks",
        "_message_opcode",
        "_message_rsv1",
        "_message_size",
        "_offered",
        "_opcode",
        "_remaining",
        "_rsv1",
        "_rsv1_allowed",
        "_scratch",
        "_utf8",
    )

    def __init__(
        self,
        *,
        is_client: bool = False,
        max_message_size: int | None = _MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        assemble: bool = True,
        rsv1_allowed: bool = False,
    ) -> None:
        self._is_client = True if is_client else False
        self._max_message_size = _limit_arg(max_message_size, "max_message_size")
        self._max_frame_size = _limit_arg(max_frame_size, "max_frame_size")
        self._assemble = True if assemble else False
        self._rsv1_allowed = True if rsv1_allowed else False
        # The longest frame the fast path of _parse takes (no limit: any legal length).
        limits = (self._max_message_size, self._max_frame_size)
        self._fast_limit = min([_MAX_LEGAL_LENGTH] + [limit for limit in limits if limit is not None])
        self._error: ProtocolError | None = None
        self._header = b""  # bytes of a header that has not fully arrived
        # The frame whose payload is arriving (valid while _in_frame).
        self._in_frame = False
        self._opcode = 0
        self._fin = False
        self._rsv1 = False
        self._remaining = 0
        self._mask: bytes | None = None
        self._mask_phase = 0
        self._frame_chunks: list[bytes] = []
        self._frame_size = 0
        # The data message being assembled (valid while _message_opcode != 0).
        self._message_opcode = 0
        self._message_rsv1 = False
        self._message_size = 0
        self._message_chunks: list = []  # bytes, or str pieces of a text message
        self._utf8: codecs.IncrementalDecoder | None = None  # while a text message is open
        self._offered: int | None = None  # the size of the buffer payload_buffer() gave out
        # Backs the windows of the frame being read in place, reused from one
        # payload_buffer() to the next: an I/O layer asks before every read.
        self._scratch: bytearray | None = None

    # Read-only, as in the compiled parser: the limits are fixed at construction.
    is_client = property(_attrgetter("_is_client"))
    max_message_size = property(_attrgetter("_max_message_size"))
    max_frame_size = property(_attrgetter("_max_frame_size"))
    assemble = property(_attrgetter("_assemble"))
    rsv1_allowed = property(_attrgetter("_rsv1_allowed"))

    @property
    def buffered(self) -> int:
        if self._error is not None:
            return 0  # a failed parser holds nothing it will ever deliver
        held = len(self._header)
        if self._in_frame:
            held += self._frame_size
        if self._assemble and self._message_opcode:
            held += self._message_size
            if self._in_frame and self._opcode < _OP_CLOSE:
                held -= self._frame_size + self._remaining
        return held

    @property
    def failed(self) -> bool:
        return self._error is not None

    def feed(self, data, size=None) -> list:
        if self._error is not None:
            self._error.frames = []
            raise self._error
        self._offered = None
        frames: list = []
        if size is not None:
            data = _bytes_prefix_arg(data, size)
        elif type(data) is not bytes:
            data = _bytes_arg(data, "data")
        try:
            self._parse(data, frames)
        except ProtocolError as exc:
            exc.frames = frames
            self._error = exc
            raise
        return frames

    def payload_buffer(self) -> memoryview | None:
        # The compiled parser's rule (its payload object exists), stated here;
        # the bytes read into this buffer are then parsed as feed() would.
        if (
            self._error is not None
            or not self._in_frame
            or self._opcode >= _OP_CLOSE
            or not self._remaining
            or self._utf8 is not None
            or (self._assemble and (not self._fin or self._opcode == _OP_CONT))
            or not _payload_goes_direct(self._mask is not None, self._frame_size, self._remaining)
        ):
            self._scratch = None
            return None
        size = self._offered = self._remaining
        scratch = self._scratch
        if scratch is None or len(scratch) < size:
            scratch = self._scratch = bytearray(size)
        return memoryview(scratch)[:size]

    def payload_received(self, size: int) -> list:
        if self._error is not None:
            self._error.frames = []
            raise self._error
        offered = self._offered
        if offered is None:
            raise ValueError("payload_received() without a buffer from payload_buffer()")
        size = _index_arg(size, "size")
        if size < 0 or size > offered:
            raise ValueError(f"payload_received({size}): the buffer holds {offered} bytes")
        with memoryview(self._scratch) as scratch:  # type: ignore[arg-type]
            return self.feed(scratch[:size].tobytes())

    # -- parsing ---------------------------------------------------------

    def _parse(self, data: bytes, frames: list) -> None:
        if self._header:
            data = self._header + data
            self._header = b""
        pos = 0
        end = len(data)
        # Fast path: a whole unfragmented data frame (one frame, one message)
        # that is entirely in ``data`` and breaks no rule. It needs no parser
        # state, changes none, and makes no method call but the unmasking.
        # Anything else (a partial frame, a control frame, fragments, a frame
        # that is bad in any way) goes through the general path below, which
        # raises the errors: those cases behave exactly as before.
        if self._is_client:
            want_mask = 0
        else:
            want_mask = 0x80
        fast_firsts = _FAST_FIRSTS_RSV1 if self._rsv1_allowed else _FAST_FIRSTS
        limit = self._fast_limit
        assemble = self._assemble
        while True:
            if not self._in_frame:
                available = end - pos
                if available < 2:
                    self._header = data[pos:]
                    return
                first = data[pos]
                second = data[pos + 1]
                if first in fast_firsts and (second & 0x80) == want_mask and not self._message_opcode:
                    length = second & 0x7F
                    start = pos + 2
                    if length == 126:
                        if available >= 4:
                            length = (data[pos + 2] << 8) | data[pos + 3]
                        start = pos + 4
                    elif length == 127:
                        if available >= 10:
                            (length,) = _U64.unpack_from(data, pos + 2)
                        start = pos + 10
                    if want_mask:
                        start += 4
                    stop = start + length
                    if stop <= end and length <= limit:
                        if not want_mask:
                            payload = data[start:stop]
                        elif length < _TRANSLATE_MIN:
                            if length:
                                # The key repeated over the payload is key × 0x…0000000100000001:
                                # one small-by-big multiplication, cheaper than building and
                                # converting the repeated bytes.
                                words = (length + 3) >> 2
                                ones = _ONES.get(words)
                                if ones is None:
                                    ones = _ones(words)
                                value = _from_bytes(data[start:stop], "little") ^ (
                                    _U32LE.unpack_from(data, start - 4)[0] * ones
                                )
                                if length & 3:
                                    payload = value.to_bytes(words << 2, "little")[:length]
                                else:
                                    payload = value.to_bytes(length, "little")
                            else:
                                payload = b""
                        else:
                            payload = _unmask(data, start, length, data[start - 4 : start])
                        if first & 0x0F == _OP_TEXT and not first & 0x40:
                            try:
                                text = payload.decode("utf-8")
                            except UnicodeDecodeError:
                                text = None  # the general path raises, with its state
                            if text is not None:
                                # Frame(_OP_TEXT, ..., True, False) without the call and its checks.
                                frame = _new_frame(Frame)
                                frame._opcode = _OP_TEXT
                                frame.payload = text if assemble else payload
                                frame._fin = True
                                frame._rsv1 = False
                                frames.append(frame)
                                pos = stop
                                continue
                        else:
                            frame = _new_frame(Frame)
                            frame._opcode = first & 0x0F
                            frame.payload = payload
                            frame._fin = True
                            frame._rsv1 = first & 0x40 != 0
                            frames.append(frame)
                            pos = stop
                            continue
                self._check_first_bytes(first, second)
                length = second & 0x7F
                header_size = 2
                if length == 126:
                    header_size = 4
                elif length == 127:
                    header_size = 10
                if second & 0x80:
                    header_size += 4
                if available < header_size:
                    self._check_length_if_known(data, pos, available, length)
                    self._header = data[pos:]
                    return
                if length == 126:
                    (length,) = _U16.unpack_from(data, pos + 2)
                elif length == 127:
                    (length,) = _U64.unpack_from(data, pos + 2)
                self._check_length(length, first & 0x0F)
                self._start_frame(first, length)
                if second & 0x80:
                    self._mask = data[pos + header_size - 4 : pos + header_size]
                    self._mask_phase = 0
                else:
                    self._mask = None
                pos += header_size
                if length == 0:
                    self._finish_frame(frames)
                    continue
            if pos >= end:
                return
            take = self._remaining
            if take > end - pos:
                take = end - pos
            if self._mask is not None:
                key = _rotate(self._mask, self._mask_phase)
                if take >= _TRANSLATE_MIN:
                    chunk = _unmask(data, pos, take, key)
                else:
                    chunk = _mask(data[pos : pos + take], key)
                self._mask_phase = (self._mask_phase + take) & 3
            else:
                chunk = data[pos : pos + take]
            pos += take
            self._remaining -= take
            self._frame_size += take
            if self._opcode < _OP_CLOSE and self._utf8 is not None:
                self._validate_text(chunk, final=False)
            else:
                self._frame_chunks.append(chunk)
            if self._remaining == 0:
                self._finish_frame(frames)

    def _check_first_bytes(self, first: int, second: int) -> None:
        """Checks that need only the first two header bytes (RFC 6455 §5.2)."""
        if first & 0x30:
            raise ProtocolError("reserved bits RSV2/RSV3 set")
        opcode = first & 0x0F
        rsv1 = first & 0x40
        if opcode not in _KNOWN_OPCODES:
            raise ProtocolError(f"reserved opcode {opcode}")
        if opcode >= _OP_CLOSE:
            # RFC 6455 §5.5: control frames are never fragmented, carry ≤ 125 bytes.
            if not first & 0x80:
                raise ProtocolError("fragmented control frame")
            if (second & 0x7F) > _MAX_CONTROL_PAYLOAD:
                raise ProtocolError(f"control frame payload longer than {_MAX_CONTROL_PAYLOAD} bytes")
            if rsv1:
                raise ProtocolError("RSV1 set on a control frame")
        elif opcode == _OP_CONT:
            if not self._message_opcode:
                raise ProtocolError("continuation frame without a message to continue")
            if rsv1:
                raise ProtocolError("RSV1 set on a continuation frame")
        else:
            if self._message_opcode:
                raise ProtocolError("new data frame inside a fragmented message")
            if rsv1 and not self._rsv1_allowed:
                raise ProtocolError("RSV1 set without a negotiated extension")
        # RFC 6455 §5.1: clients mask every frame, servers never do.
        if second & 0x80:
            if self._is_client:
                raise ProtocolError("masked frame from a server")
        elif not self._is_client:
            raise ProtocolError("unmasked frame from a client")

    def _check_length_if_known(self, data: bytes, pos: int, available: int, length: int) -> None:
        """Reject a too-large frame as soon as its extended length has arrived."""
        if length == 126 and available >= 4:
            (length,) = _U16.unpack_from(data, pos + 2)
        elif length == 127 and available >= 10:
            (length,) = _U64.unpack_from(data, pos + 2)
        elif length >= 126:
            return
        self._check_length(length, data[pos] & 0x0F)

    def _check_length(self, length: int, opcode: int) -> None:
        if length >> 63:
            raise ProtocolError("frame length with the most significant bit set")
        if opcode >= _OP_CLOSE:
            return
        if self._max_frame_size is not None and length > self._max_frame_size:
            raise MessageTooBig(f"frame of {length} bytes exceeds the limit of {self._max_frame_size}")
        if self._max_message_size is not None and self._message_size + length > self._max_message_size:
            raise MessageTooBig(
                f"message of {self._message_size + length} bytes or more exceeds the limit of {self._max_message_size}"
            )

    def _start_frame(self, first: int, length: int) -> None:
        opcode = first & 0x0F
        self._in_frame = True
        self._opcode = opcode
        self._fin = bool(first & 0x80)
        self._rsv1 = bool(first & 0x40)
        self._remaining = length
        self._frame_chunks = []
        self._frame_size = 0
        if opcode == _OP_TEXT or opcode == _OP_BINARY:
            self._message_opcode = opcode
            self._message_rsv1 = self._rsv1
            self._message_size = 0
            self._message_chunks = []
            # A compressed message is validated after decompression, not here.
            if opcode == _OP_TEXT and not self._rsv1:
                self._utf8 = _Utf8Decoder()
        if opcode < _OP_CLOSE:
            self._message_size += length

    def _validate_text(self, chunk: bytes, final: bool) -> None:
        decoder = self._utf8
        assert decoder is not None
        try:
            text = decoder.decode(chunk, final)
        except UnicodeDecodeError:
            raise InvalidUTF8("invalid UTF-8 in text message") from None
        # CPython's decoder waits for a third byte before rejecting a UTF-16
        # surrogate (ED A0..BF); reject it as soon as its second byte arrives.
        pending = decoder.getstate()[0]
        if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
            raise InvalidUTF8("invalid UTF-8 in text message")
        if self._assemble:
            if text:
                self._message_chunks.append(text)
        else:
            self._frame_chunks.append(chunk)

    def _finish_frame(self, frames: list) -> None:
        self._in_frame = False
        opcode = self._opcode
        if opcode >= _OP_CLOSE:
            payload = b"".join(self._frame_chunks)
            self._frame_chunks = []
            self._frame_size = 0
            if opcode == _OP_CLOSE:
                parse_close(payload)  # RFC 6455 §5.5.1, §7.4: validate code and reason
            frames.append(Frame(opcode, payload, True, False))
            return
        if self._fin and self._utf8 is not None:
            self._validate_text(b"", final=True)
        if not self._assemble:
            payload = b"".join(self._frame_chunks)
            frames.append(Frame(opcode, payload, self._fin, self._rsv1))
        elif self._utf8 is None:
            self._message_chunks.append(b"".join(self._frame_chunks))
        self._frame_chunks = []
        self._frame_size = 0
        if not self._fin:
            return
        if self._assemble:
            joiner = "" if self._utf8 is not None else b""
            frames.append(Frame(self._message_opcode, joiner.join(self._message_chunks), True, self._message_rsv1))
        self._message_opcode = 0
        self._message_size = 0
        self._message_chunks = []
        self._utf8 = None


# -- encoding --------------------------------------------------------------


def _check_control(opcode: int, fin: bool, rsv1: bool, length: int) -> None:
    """RFC 6455 §5.5: control frames are never fragmented, never compressed, short."""
    if opcode >= _OP_CLOSE:
        if not fin:
            raise ValueError("control frames cannot be fragmented")
        if rsv1:
            raise ValueError("control frames cannot set RSV1")
        if length > _MAX_CONTROL_PAYLOAD:
            raise ValueError(f"control frame payload longer than {_MAX_CONTROL_PAYLOAD} bytes")


# Headers of unmasked final text and binary frames: 2 bytes below 126, else packed.
_SHORT_HEADERS = {op: [bytes((0x80 | op, n)) for n in range(126)] for op in (_OP_TEXT, _OP_BINARY)}
_HEAD16 = struct.Struct("!BBH")
_HEAD64 = struct.Struct("!BBQ")


def _frame(first: int, data: bytes, key: bytes | None) -> bytes:
    if key is None:
        return _frame_header(first, len(data)) + data
    return _frame_header(first, len(data), 0x80) + key + _mask(data, key)


def _key(mask_key) -> bytes:
    """The masking key of a frame: a fresh random one unless ``mask_key`` is given."""
    if mask_key is None:
        return os.urandom(4)
    return mask_key if type(mask_key) is bytes and len(mask_key) == 4 else _mask_arg(mask_key, "mask_key")


def _as_payload(payload) -> bytes:
    if type(payload) is bytes:
        return payload
    if type(payload) is str:
        return payload.encode("utf-8")
    return _payload_arg(payload)


def encode_frame(
    opcode: int, payload, *, fin: bool = True, rsv1: bool = False, mask: bool = False, mask_key=None
) -> bytes:
    if type(opcode) is not int or opcode not in _KNOWN_OPCODES:
        opcode = _opcode_arg(opcode)
    data = _as_payload(payload)
    fin = True if fin else False
    rsv1 = True if rsv1 else False
    mask = True if mask else False
    _check_control(opcode, fin, rsv1, len(data))
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    return _frame(first, data, _key(mask_key) if mask else None)


def encode_message(
    opcode: int,
    payload,
    *,
    mask: bool = False,
    max_frame_size: int = _MAX_FRAME_SIZE,
    rsv1: bool = False,
    mask_key=None,
) -> bytes:
    # Fast path: an unmasked, uncompressed text or binary message of str or
    # bytes that fits one frame (what a server sends most). Every argument is
    # then valid, so nothing below could raise: same result, fewer steps.
    if (
        mask is False
        and rsv1 is False
        and (opcode == _OP_BINARY or opcode == _OP_TEXT)
        and type(opcode) is int
        and type(max_frame_size) is int
        and max_frame_size > 0
        and (type(payload) is bytes or type(payload) is str)
    ):
        if type(payload) is str:
            payload = payload.encode("utf-8")  # may raise, as _as_payload would, in the same order
        length = len(payload)
        if length <= max_frame_size:
            if length < 126:
                return _SHORT_HEADERS[opcode][length] + payload
            if length < 65536:
                return _HEAD16.pack(0x80 | opcode, 126, length) + payload
            return _HEAD64.pack(0x80 | opcode, 127, length) + payload
        # Several frames: the general path below, with the payload now bytes.
    if type(opcode) is not int or opcode not in _KNOWN_OPCODES:
        opcode = _opcode_arg(opcode)
    data = _as_payload(payload)
    mask = True if mask else False
    if type(max_frame_size) is not int or max_frame_size < 1:
        max_frame_size = _frame_size_arg(max_frame_size)
    rsv1 = True if rsv1 else False
    length = len(data)
    if length <= max_frame_size or opcode >= _OP_CLOSE:
        _check_control(opcode, True, rsv1, length)
        return _frame(0x80 | (0x40 if rsv1 else 0) | opcode, data, _key(mask_key) if mask else None)
    parts = []
    first = opcode | (0x40 if rsv1 else 0)
    for start in range(0, length, max_frame_size):
        chunk = data[start : start + max_frame_size]
        if start + max_frame_size >= length:
            first |= 0x80
        parts.append(_frame(first, chunk, _key(mask_key) if mask else None))
        first = _OP_CONT
    return b"".join(parts)
