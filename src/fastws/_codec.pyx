# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# cython: autotestdict=False
"""The compiled codec: frame parsing, unmasking, UTF-8 validation, reassembly and
encoding in C. Its twin ``_codec_py.py`` implements the same interface
(``_codec.pyi``) in pure Python; the test suite holds the two to one behaviour.

The hot path for a complete frame is: header parsed from the input buffer,
payload unmasked straight into the ``bytes`` object handed to the caller (or
into a scratch buffer that is decoded to ``str``), one ``Frame`` out. Partial
frames and fragmented messages go through one growable buffer per parser.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_FillInfo, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.object cimport PyObject
from cpython.long cimport PyLong_AsLongAndOverflow, PyLong_AsLongLongAndOverflow
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport INT64_MAX, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy

import os

from . import _rules
from ._rules import MAX_FRAME_SIZE as _MAX_FRAME_SIZE
from ._rules import MAX_MESSAGE_SIZE as _MAX_MESSAGE_SIZE
from .exceptions import InvalidUTF8, MessageTooBig, ProtocolError

__all__ = ["apply_mask", "apply_mask_inplace", "Frame", "FrameParser", "encode_frame", "encode_message"]

cdef extern from "_codec_simd.h":
    void fastws_mask(const uint8_t *src, uint8_t *dst, size_t n, const uint8_t *key4, unsigned phase) nogil
    int fastws_utf8_feed(uint32_t *state, const uint8_t *s, size_t n) nogil

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t *size) except NULL
    const Py_ssize_t PY_SSIZE_T_MAX

# The protocol's numbers and rules come from ``_rules`` (shared with the Python
# twin and ``frames``), copied once at import into C variables and tables.
cdef int OP_CONT = _rules.OP_CONT
cdef int OP_TEXT = _rules.OP_TEXT
cdef int OP_BINARY = _rules.OP_BINARY
cdef int OP_CLOSE = _rules.OP_CLOSE   # opcodes from here up are control frames
cdef Py_ssize_t MAX_CONTROL_PAYLOAD = _rules.MAX_CONTROL_PAYLOAD
cdef Py_ssize_t _C_MAX_FRAME_SIZE = _rules.MAX_FRAME_SIZE
cdef bint _KNOWN_OPCODE[16]           # indexed by the 4-bit opcode field
_is_valid_close_code = _rules.is_valid_close_code


cdef int _tabulate_rules() except -1:
    cdef int opcode
    for opcode in range(16):
        _KNOWN_OPCODE[opcode] = _rules.is_known_opcode(opcode)
        if _KNOWN_OPCODE[opcode] and _rules.is_control(opcode) != (opcode >= OP_CLOSE):
            raise ImportError("_rules.is_control must mean opcode >= OP_CLOSE")
    if MAX_CONTROL_PAYLOAD > CONTROL_BUFFER_BYTES:
        raise ImportError("MAX_CONTROL_PAYLOAD exceeds the parser's control buffer")
    if (_rules.DIRECT_PAYLOAD_BYTES, _rules.TRUSTED_PAYLOAD_BYTES) != (DIRECT_ALLOCATION_BYTES,
                                                                      SERVER_FRAME_ALLOCATION_BYTES):
        raise ImportError("_rules' direct payload sizes differ from the parser's")
    return 0


cdef enum:
    # Storage for a control frame's payload: RFC 6455 §5.2 caps it at 125 by
    # the 7-bit length field; _tabulate_rules() checks MAX_CONTROL_PAYLOAD fits.
    CONTROL_BUFFER_BYTES = 125
    # A whole masked text frame up to this size is unmasked into a buffer on
    # the stack before it is decoded: no heap buffer is kept for it. (Kept
    # between messages, a 4 KiB scratch buffer was 4 of an idle connection's
    # 11 KiB.)
    SMALL_TEXT_BYTES = 4096
    # Releasing the GIL costs about as much as masking 1 KiB: only worth it for
    # buffers large enough that other threads gain from running meanwhile.
    RELEASE_GIL_BYTES = 262144
    # _rules.payload_goes_direct(): when a partly arrived frame's payload object
    # is allocated (_rules.DIRECT_PAYLOAD_BYTES, TRUSTED_PAYLOAD_BYTES).
    DIRECT_ALLOCATION_BYTES = 65536
    SERVER_FRAME_ALLOCATION_BYTES = 16777216


_tabulate_rules()


cdef inline bint _known_opcode(int opcode):
    return 0 <= opcode <= 15 and _KNOWN_OPCODE[opcode]


# -- arguments -----------------------------------------------------------------
# The common exact types (bytes, str, small int) are handled here in C; anything
# else goes through the same function of _rules as in the Python twin, so the
# two backends accept, convert and reject every argument alike (see _rules).

cdef enum:
    AS_DATA = 0       # a bytes-like object
    AS_PAYLOAD = 1    # str (as UTF-8) or a bytes-like object
    AS_WRITABLE = 2   # a writable, C-contiguous buffer


# Not GC-tracked: ``owner`` is bytes, str or None, ``view.obj`` is never
# traversed, and each instance is a local of the call that made it.
@cython.no_gc
@cython.final
@cython.freelist(8)
cdef class _Bytes:
    """A read (or write) view of an argument's bytes; see _bytes_of()."""
    cdef Py_buffer view
    cdef bint acquired
    cdef object owner
    cdef const uint8_t *ptr
    cdef Py_ssize_t size

    def __dealloc__(self):
        if self.acquired:
            PyBuffer_Release(&self.view)


cdef _Bytes _bytes_of(object obj, int kind, str name):
    """View the bytes of argument ``name``: bytes and (for payloads) str directly,
    any other buffer through the buffer protocol, the rest via _rules."""
    cdef _Bytes result = _Bytes.__new__(_Bytes)
    cdef bint failed = False
    if type(obj) is bytes and kind != AS_WRITABLE:
        result.owner = obj
        result.ptr = <const uint8_t *>PyBytes_AS_STRING(obj)
        result.size = PyBytes_GET_SIZE(obj)
        return result
    if type(obj) is str and kind == AS_PAYLOAD:
        result.owner = obj
        result.ptr = <const uint8_t *>PyUnicode_AsUTF8AndSize(obj, &result.size)
        return result
    try:
        PyObject_GetBuffer(obj, &result.view, PyBUF_WRITABLE if kind == AS_WRITABLE else PyBUF_SIMPLE)
    except Exception:
        failed = True
    if failed:  # outside the except block, so the error raised is not chained
        if kind == AS_WRITABLE:
            obj = _rules.writable_arg(obj)  # raises, or gives a writable byte view
            PyObject_GetBuffer(obj, &result.view, PyBUF_WRITABLE)
        else:
            # A str where bytes are expected, an int, a non-contiguous view...
            result.owner = _rules.payload_arg(obj) if kind == AS_PAYLOAD else _rules.bytes_arg(obj, name)
            result.ptr = <const uint8_t *>PyBytes_AS_STRING(result.owner)
            result.size = PyBytes_GET_SIZE(result.owner)
            return result
    result.acquired = True
    result.ptr = <const uint8_t *>result.view.buf
    result.size = result.view.len
    return result


cdef inline Py_ssize_t _prefix_size(object size, Py_ssize_t available) except -1:
    """feed()'s ``size``; _rules.prefix_size_arg raises for a bad one."""
    if type(size) is int and 0 <= size <= available:
        return size
    return _rules.prefix_size_arg(size, available)


cdef inline int _read_mask(object mask, uint8_t *key, str name) except -1:
    """Copy a 4-byte masking key into ``key``."""
    if type(mask) is bytes and PyBytes_GET_SIZE(mask) == 4:
        memcpy(key, PyBytes_AS_STRING(mask), 4)
        return 0
    cdef _Bytes view = _bytes_of(mask, AS_DATA, name)
    if view.size != 4:
        _rules.mask_arg(mask, name)  # raises the shared error
    memcpy(key, view.ptr, 4)
    return 0


# The six opcode int objects (CPython caches small ints, so callers pass these
# very objects): recognising one by identity converts it without a call.
cdef PyObject *_OPCODE_OBJECTS[6]
cdef int _OPCODE_VALUES[6]


cdef int _remember_opcodes() except -1:
    cdef int i
    for i, opcode in enumerate(_rules.OPCODES):
        _OPCODE_OBJECTS[i] = <PyObject *>opcode  # kept alive by _rules.OPCODES
        _OPCODE_VALUES[i] = opcode
    return 0


_remember_opcodes()


cdef inline int _opcode_of(object opcode) except -1:
    cdef int i, overflow = 0
    cdef long value
    for i in range(6):
        if <PyObject *>opcode == _OPCODE_OBJECTS[i]:
            return _OPCODE_VALUES[i]
    if type(opcode) is int:
        value = PyLong_AsLongAndOverflow(opcode, &overflow)
        if not overflow and 0 <= value <= 15 and _KNOWN_OPCODE[value]:
            return <int>value
    return _rules.opcode_arg(opcode)


cdef inline Py_ssize_t _frame_size_of(object max_frame_size) except -1:
    """encode_message's max_frame_size; sizes beyond any payload are all one."""
    cdef int overflow = 0
    cdef long long value
    if max_frame_size is _MAX_FRAME_SIZE:  # the default, also Connection's
        return _C_MAX_FRAME_SIZE
    if type(max_frame_size) is int:
        value = PyLong_AsLongLongAndOverflow(max_frame_size, &overflow)
        if overflow > 0:
            return PY_SSIZE_T_MAX
        if not overflow and 1 <= value <= PY_SSIZE_T_MAX:
            return <Py_ssize_t>value
    size = _rules.frame_size_arg(max_frame_size)
    return PY_SSIZE_T_MAX if size > PY_SSIZE_T_MAX else size


def apply_mask(data, mask):
    cdef uint8_t key[4]
    cdef const uint8_t *src
    cdef Py_ssize_t size
    cdef _Bytes view = None
    if type(data) is bytes:  # the common case, without a view object
        src = <const uint8_t *>PyBytes_AS_STRING(data)
        size = PyBytes_GET_SIZE(data)
    else:
        view = _bytes_of(data, AS_DATA, "data")
        src, size = view.ptr, view.size
    _read_mask(mask, key, "mask")
    cdef bytes out = PyBytes_FromStringAndSize(NULL, size)
    cdef uint8_t *dst = <uint8_t *>PyBytes_AS_STRING(out)
    if size < RELEASE_GIL_BYTES:
        fastws_mask(src, dst, size, key, 0)
    else:
        with nogil:
            fastws_mask(src, dst, size, key, 0)
    return out


def apply_mask_inplace(buffer, mask):
    cdef uint8_t key[4]
    cdef _Bytes dst = _bytes_of(buffer, AS_WRITABLE, "buffer")
    _read_mask(mask, key, "mask")
    if dst.size < RELEASE_GIL_BYTES:
        fastws_mask(dst.ptr, <uint8_t *>dst.ptr, dst.size, key, 0)
    else:
        with nogil:
            fastws_mask(dst.ptr, <uint8_t *>dst.ptr, dst.size, key, 0)


# Frames hold only bytes or str: they cannot form reference cycles, so the
# garbage collector need not track them (thousands are made per read).
@cython.no_gc
@cython.freelist(1024)
cdef class Frame:
    cdef int _opcode
    cdef public object payload
    cdef bint _fin
    cdef bint _rsv1

    def __init__(self, opcode, payload, fin=True, rsv1=False):
        self._opcode = _opcode_of(opcode)
        self.payload = payload
        self._fin = fin
        self._rsv1 = rsv1

    # Assignments follow the constructor's rules (as in the Python twin).
    @property
    def opcode(self):
        return self._opcode

    @opcode.setter
    def opcode(self, value):
        self._opcode = _opcode_of(value)

    @property
    def fin(self):
        return self._fin

    @fin.setter
    def fin(self, value):
        self._fin = value

    @property
    def rsv1(self):
        return self._rsv1

    @rsv1.setter
    def rsv1(self, value):
        self._rsv1 = value

    def __eq__(self, other):
        # Duck-typed so that frames of the two backends compare by their fields.
        try:
            return (
                self.opcode == other.opcode
                and self.fin == other.fin
                and self.rsv1 == other.rsv1
                and type(self.payload) is type(other.payload)
                and self.payload == other.payload
            )
        except AttributeError:
            return NotImplemented

    __hash__ = None

    def __repr__(self):
        payload = self.payload
        shown = repr(payload[:60]) + ("..." if len(payload) > 60 else "")
        return f"Frame(opcode={self.opcode}, payload={shown}, fin={self.fin}, rsv1={self.rsv1})"


cdef inline Frame _new_frame(int opcode, object payload, bint fin, bint rsv1):
    cdef Frame frame = Frame.__new__(Frame)
    frame._opcode = opcode
    frame.payload = payload
    frame._fin = fin
    frame._rsv1 = rsv1
    return frame


@cython.final
cdef class _PayloadWindow:
    """The writable rest of a frame's payload object: see payload_buffer()."""
    cdef object owner
    cdef char *ptr
    cdef Py_ssize_t size

    def __getbuffer__(self, Py_buffer *buffer, int flags):
        PyBuffer_FillInfo(buffer, self, self.ptr, self.size, 0, flags)


cdef class FrameParser:
    cdef readonly bint is_client
    cdef readonly bint assemble
    cdef readonly bint rsv1_allowed
    cdef readonly object max_message_size
    cdef readonly object max_frame_size
    cdef long long _max_message   # -1: unlimited
    cdef long long _max_frame     # -1: unlimited
    cdef object _error

    # A header that has not fully arrived (at most 14 bytes).
    cdef uint8_t _header[14]
    cdef Py_ssize_t _header_len

    # The frame whose payload is arriving (valid while _in_frame).
    cdef bint _in_frame
    cdef int _opcode
    cdef bint _fin
    cdef bint _rsv1
    cdef bint _masked
    cdef uint8_t _mask[4]
    cdef unsigned _mask_phase
    cdef uint64_t _remaining
    cdef uint64_t _frame_size
    cdef uint8_t _control[CONTROL_BUFFER_BYTES]

    # The data message being assembled (valid while _message_opcode != 0).
    cdef int _message_opcode
    cdef bint _message_rsv1
    cdef uint64_t _message_size
    cdef bint _check_utf8
    cdef uint32_t _utf8_state

    # The bytes object a frame's payload is unmasked into when it is allocated
    # up front (see DIRECT_ALLOCATION_BYTES); None otherwise.
    cdef object _direct
    cdef bint _window_offered  # payload_buffer() gave out a view of it

    # Payload bytes held for the message (assemble) or the frame (not assemble).
    cdef uint8_t *_buf
    cdef size_t _buf_len
    cdef size_t _buf_cap

    def __init__(self, *, is_client=False, max_message_size=_MAX_MESSAGE_SIZE,
                 max_frame_size=None, assemble=True, rsv1_allowed=False):
        # In signature order, as the Python twin (see _rules for the rules).
        self.is_client = is_client
        self.max_message_size = _rules.limit_arg(max_message_size, "max_message_size")
        self.max_frame_size = _rules.limit_arg(max_frame_size, "max_frame_size")
        self.assemble = assemble
        self.rsv1_allowed = rsv1_allowed
        # -1: unlimited. No frame is 2**63 bytes or more (RFC 6455 §5.2), so a
        # larger limit is no limit.
        self._max_message = _c_limit(self.max_message_size)
        self._max_frame = _c_limit(self.max_frame_size)

    def __dealloc__(self):
        free(self._buf)

    @property
    def buffered(self):
        cdef uint64_t held = self._header_len
        if self._error is not None:
            return 0  # a failed parser holds nothing it will ever deliver
        if self._in_frame:
            held += self._frame_size
        if self.assemble and self._message_opcode:
            held += self._message_size
            if self._in_frame and self._opcode < OP_CLOSE:
                held -= self._frame_size + self._remaining
        return held

    @property
    def failed(self):
        return self._error is not None

    def feed(self, data, size=None):
        if self._error is not None:
            self._error.frames = []
            raise self._error
        self._window_offered = False
        cdef list frames = []
        cdef _Bytes view = None
        cdef const uint8_t *ptr
        cdef Py_ssize_t count
        if type(data) is bytes:
            ptr = <const uint8_t *>PyBytes_AS_STRING(data)
            count = PyBytes_GET_SIZE(data)
        else:
            view = _bytes_of(data, AS_DATA, "data")
            ptr = view.ptr
            count = view.size
        if size is not None:
            count = _prefix_size(size, count)
        try:
            self._parse(ptr, count, frames)
        except ProtocolError as exc:
            exc.frames = frames
            self._error = exc
            raise
        return frames

    def payload_buffer(self):
        if self._error is not None or self._direct is None or self._check_utf8:
            return None
        cdef _PayloadWindow window = _PayloadWindow.__new__(_PayloadWindow)
        window.owner = self._direct
        window.ptr = PyBytes_AS_STRING(self._direct) + <Py_ssize_t>self._frame_size
        window.size = <Py_ssize_t>self._remaining
        self._window_offered = True
        return memoryview(window)

    def payload_received(self, size):
        if self._error is not None:
            self._error.frames = []
            raise self._error
        if not self._window_offered:
            raise ValueError("payload_received() without a buffer from payload_buffer()")
        size = _rules.index_arg(size, "size")
        if size < 0 or size > self._remaining:
            raise ValueError(f"payload_received({size}): the buffer holds {self._remaining} bytes")
        self._window_offered = False
        cdef Py_ssize_t count = size
        cdef list frames = []
        cdef uint8_t *dst = <uint8_t *>PyBytes_AS_STRING(self._direct) + self._frame_size
        if self._masked:
            fastws_mask(dst, dst, count, self._mask, self._mask_phase)
            self._mask_phase = (self._mask_phase + count) & 3
        self._remaining -= count
        self._frame_size += count
        if self._remaining == 0:
            self._finish_frame(frames)
        return frames

    # -- parsing ---------------------------------------------------------

    cdef int _parse(self, const uint8_t *data, Py_ssize_t end, list frames) except -1:
        cdef Py_ssize_t pos = 0, header_size, take, missing
        cdef uint8_t joined[14]
        if self._header_len:
            # Complete the held header from the new bytes.
            take = min(14 - self._header_len, end)
            memcpy(joined, self._header, self._header_len)
            memcpy(joined + self._header_len, data, take)
            header_size = self._parse_header(joined, self._header_len + take)
            if header_size == 0:
                memcpy(self._header, joined, self._header_len + take)
                self._header_len += take
                return 0
            pos = header_size - self._header_len
            self._header_len = 0
            if self._remaining == 0:
                self._finish_frame(frames)
            else:
                self._maybe_allocate_direct(end - pos)
        while True:
            if not self._in_frame:
                header_size = self._parse_header(data + pos, end - pos)
                if header_size == 0:
                    self._header_len = end - pos
                    memcpy(self._header, data + pos, self._header_len)
                    return 0
                pos += header_size
                if self._remaining == 0:
                    self._finish_frame(frames)
                    continue
                if (<uint64_t>(end - pos) >= self._remaining and self._opcode < OP_CLOSE
                        and (not self.assemble or (self._fin and self._opcode != OP_CONT))):
                    # Fast path: a whole frame that is a whole message (or, in
                    # frame mode, any data frame) goes straight into its object.
                    take = <Py_ssize_t>self._remaining
                    self._whole_frame(data + pos, take, frames)
                    pos += take
                    continue
                self._maybe_allocate_direct(end - pos)
            if pos >= end:
                return 0
            take = end - pos
            if <uint64_t>take > self._remaining:
                take = <Py_ssize_t>self._remaining
            self._take_payload(data + pos, take)
            pos += take
            if self._remaining == 0:
                self._finish_frame(frames)
            elif self._direct is None:
                self._maybe_move_to_direct()

    cdef Py_ssize_t _parse_header(self, const uint8_t *p, Py_ssize_t available) except -1:
        """Parse a header at p; return its size, or 0 if it has not fully arrived."""
        if available < 2:
            return 0
        cdef uint8_t first = p[0], second = p[1]
        cdef uint64_t length = second & 0x7F
        cdef Py_ssize_t header_size = 2
        self._check_first_bytes(first, second)
        if length == 126:
            header_size = 4
        elif length == 127:
            header_size = 10
        if second & 0x80:
            header_size += 4
        if available < header_size:
            # Reject a too-large frame as soon as its extended length has arrived.
            if length == 126 and available >= 4:
                self._check_length((<uint64_t>p[2] << 8) | p[3], first & 0x0F)
            elif length == 127 and available >= 10:
                self._check_length(_read_u64(p + 2), first & 0x0F)
            elif length < 126:
                self._check_length(length, first & 0x0F)
            return 0
        if length == 126:
            length = (<uint64_t>p[2] << 8) | p[3]
        elif length == 127:
            length = _read_u64(p + 2)
        self._check_length(length, first & 0x0F)
        self._start_frame(first, length)
        self._masked = (second & 0x80) != 0
        if self._masked:
            memcpy(self._mask, p + header_size - 4, 4)
            self._mask_phase = 0
        return header_size

    cdef int _check_first_bytes(self, uint8_t first, uint8_t second) except -1:
        """Checks that need only the first two header bytes (RFC 6455 §5.2)."""
        cdef int opcode = first & 0x0F
        cdef bint rsv1 = (first & 0x40) != 0
        if first & 0x30:
            raise ProtocolError("reserved bits RSV2/RSV3 set")
        if not _known_opcode(opcode):
            raise ProtocolError(f"reserved opcode {opcode}")
        if opcode >= OP_CLOSE:
            # RFC 6455 §5.5: control frames are never fragmented, carry ≤ 125 bytes.
            if not first & 0x80:
                raise ProtocolError("fragmented control frame")
            if (second & 0x7F) > MAX_CONTROL_PAYLOAD:
                raise ProtocolError(f"control frame payload longer than {MAX_CONTROL_PAYLOAD} bytes")
            if rsv1:
                raise ProtocolError("RSV1 set on a control frame")
        elif opcode == OP_CONT:
            if not self._message_opcode:
                raise ProtocolError("continuation frame without a message to continue")
            if rsv1:
                raise ProtocolError("RSV1 set on a continuation frame")
        else:
            if self._message_opcode:
                raise ProtocolError("new data frame inside a fragmented message")
            if rsv1 and not self.rsv1_allowed:
                raise ProtocolError("RSV1 set without a negotiated extension")
        # RFC 6455 §5.1: clients mask every frame, servers never do.
        if second & 0x80:
            if self.is_client:
                raise ProtocolError("masked frame from a server")
        elif not self.is_client:
            raise ProtocolError("unmasked frame from a client")
        return 0

    cdef int _check_length(self, uint64_t length, int opcode) except -1:
        if length >> 63:
            raise ProtocolError("frame length with the most significant bit set")
        if opcode >= OP_CLOSE:
            return 0
        if self._max_frame >= 0 and length > <uint64_t>self._max_frame:
            raise MessageTooBig(f"frame of {length} bytes exceeds the limit of {self.max_frame_size}")
        if self._max_message >= 0 and self._message_size + length > <uint64_t>self._max_message:
            raise MessageTooBig(
                f"message of {self._message_size + length} bytes or more exceeds the limit of {self.max_message_size}"
            )
        return 0

    cdef void _start_frame(self, uint8_t first, uint64_t length):
        cdef int opcode = first & 0x0F
        self._in_frame = True
        self._opcode = opcode
        self._fin = (first & 0x80) != 0
        self._rsv1 = (first & 0x40) != 0
        self._remaining = length
        self._frame_size = 0
        if opcode == OP_TEXT or opcode == OP_BINARY:
            self._message_opcode = opcode
            self._message_rsv1 = self._rsv1
            self._message_size = 0
            self._buf_len = 0
            # A compressed message is validated after decompression, not here.
            self._check_utf8 = opcode == OP_TEXT and not self._rsv1
            self._utf8_state = 0
        if opcode < OP_CLOSE:
            self._message_size += length
            if not self.assemble:
                self._buf_len = 0

    cdef int _whole_frame(self, const uint8_t *src, Py_ssize_t size, list frames) except -1:
        """Deliver a data frame whose payload is all in ``src``."""
        cdef object payload
        cdef uint8_t *scratch
        cdef uint8_t small[SMALL_TEXT_BYTES]
        self._in_frame = False
        self._remaining = 0
        if self._check_utf8 and self.assemble:
            # A whole text message: unmask into scratch space, decode once.
            if self._masked:
                scratch = &small[0] if size <= SMALL_TEXT_BYTES else self._reserve(size)
                fastws_mask(src, scratch, size, self._mask, 0)
                src = scratch
            try:
                payload = PyUnicode_DecodeUTF8(<const char *>src, size, NULL)
            except UnicodeDecodeError:
                raise InvalidUTF8("invalid UTF-8 in text message") from None
            self._release_buffer()
        else:
            payload = PyBytes_FromStringAndSize(NULL, size)
            if self._masked:
                fastws_mask(src, <uint8_t *>PyBytes_AS_STRING(payload), size, self._mask, 0)
            else:
                memcpy(PyBytes_AS_STRING(payload), src, size)
            if self._check_utf8:
                self._feed_utf8(<const uint8_t *>PyBytes_AS_STRING(payload), size)
                if self._fin and self._utf8_state != 0:
                    raise InvalidUTF8("invalid UTF-8 in text message")
        if self.assemble:
            frames.append(_new_frame(self._message_opcode, payload, True, self._message_rsv1))
        else:
            frames.append(_new_frame(self._opcode, payload, self._fin, self._rsv1))
        if self._fin:
            self._message_opcode = 0
            self._message_size = 0
        return 0

    cdef inline bint _one_object(self):
        """Whether the current frame's payload is delivered as one bytes object
        (a data frame, not part of an assembled or text message)."""
        if self._opcode >= OP_CLOSE or self._remaining == 0:
            return False
        return not (self.assemble and (not self._fin or self._opcode == OP_CONT or self._check_utf8))

    cdef int _maybe_allocate_direct(self, Py_ssize_t available) except -1:
        """At a frame's start: allocate its payload object now if the frame is
        delivered as one object and is small or mostly here."""
        if not self._one_object():
            return 0
        if (self._remaining <= DIRECT_ALLOCATION_BYTES or <uint64_t>available * 2 >= self._remaining
                or (not self._masked and self._remaining <= SERVER_FRAME_ALLOCATION_BYTES)):
            # _rules.payload_goes_direct(), with the available bytes not yet taken
            self._direct = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>self._remaining)
        return 0

    cdef int _maybe_move_to_direct(self) except -1:
        """Mid-frame: once half of a buffered frame has arrived, move it into
        its payload object, so the other half is copied once, not twice."""
        if self._direct is not None or self._remaining > self._frame_size or not self._one_object():
            return 0
        self._direct = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>(self._frame_size + self._remaining))
        memcpy(PyBytes_AS_STRING(self._direct), self._buf, self._frame_size)
        self._buf_len = 0
        self._release_buffer()
        return 0

    cdef int _take_payload(self, const uint8_t *src, Py_ssize_t size) except -1:
        """Unmask the next ``size`` payload bytes of the current frame into its buffer."""
        cdef uint8_t *dst
        if self._opcode >= OP_CLOSE:
            dst = self._control + self._frame_size
        elif self._direct is not None:
            dst = <uint8_t *>PyBytes_AS_STRING(self._direct) + self._frame_size
        else:
            dst = self._reserve(size) + self._buf_len
        if self._masked:
            fastws_mask(src, dst, size, self._mask, self._mask_phase)
            self._mask_phase = (self._mask_phase + size) & 3
        else:
            memcpy(dst, src, size)
        self._remaining -= size
        self._frame_size += size
        if self._opcode < OP_CLOSE:
            if self._direct is None:
                self._buf_len += size
            if self._check_utf8:
                self._feed_utf8(dst, size)
        return 0

    cdef inline int _feed_utf8(self, const uint8_t *data, Py_ssize_t size) except -1:
        if not fastws_utf8_feed(&self._utf8_state, data, size):
            raise InvalidUTF8("invalid UTF-8 in text message")
        return 0

    cdef int _finish_frame(self, list frames) except -1:
        cdef int opcode = self._opcode
        cdef object payload
        self._in_frame = False
        if opcode >= OP_CLOSE:
            payload = PyBytes_FromStringAndSize(<const char *>self._control, <Py_ssize_t>self._frame_size)
            self._frame_size = 0
            if opcode == OP_CLOSE:
                _check_close_payload(self._control, PyBytes_GET_SIZE(payload))
            frames.append(_new_frame(opcode, payload, True, False))
            return 0
        if self._fin and self._check_utf8 and self._utf8_state != 0:
            raise InvalidUTF8("invalid UTF-8 in text message")
        self._frame_size = 0
        if self._direct is not None:
            payload, self._direct = self._direct, None
            if self.assemble:
                frames.append(_new_frame(self._message_opcode, payload, True, self._message_rsv1))
            else:
                frames.append(_new_frame(opcode, payload, self._fin, self._rsv1))
        elif not self.assemble:
            payload = PyBytes_FromStringAndSize(<const char *>self._buf, self._buf_len)
            self._buf_len = 0
            frames.append(_new_frame(opcode, payload, self._fin, self._rsv1))
        elif self._fin:
            if self._check_utf8:
                # Already validated byte by byte; decoding cannot fail.
                payload = PyUnicode_DecodeUTF8(<const char *>self._buf, self._buf_len, NULL)
            else:
                payload = PyBytes_FromStringAndSize(<const char *>self._buf, self._buf_len)
            frames.append(_new_frame(self._message_opcode, payload, True, self._message_rsv1))
        if self._fin:
            self._message_opcode = 0
            self._message_size = 0
            self._buf_len = 0
            self._release_buffer()
        return 0

    cdef uint8_t *_reserve(self, Py_ssize_t extra) except NULL:
        """Make room for ``extra`` more bytes after _buf_len; return the buffer."""
        cdef size_t needed = self._buf_len + <size_t>extra
        cdef size_t capacity
        cdef uint8_t *grown
        if needed > self._buf_cap or self._buf == NULL:
            capacity = self._buf_cap * 2 if self._buf_cap else 4096
            if capacity < needed:
                capacity = needed
            grown = <uint8_t *>realloc(self._buf, capacity)
            if grown == NULL:
                raise MemoryError()
            self._buf = grown
            self._buf_cap = capacity
        return self._buf

    cdef inline void _release_buffer(self):
        """Free the assembly buffer once its message is delivered: an idle
        connection holds none (a message that needs one allocates it again)."""
        if self._buf != NULL:
            free(self._buf)
            self._buf = NULL
            self._buf_cap = 0


cdef long long _c_limit(object limit):
    return -1 if limit is None or limit > INT64_MAX else limit


cdef inline uint64_t _read_u64(const uint8_t *p):
    cdef uint64_t value = 0
    cdef int i
    for i in range(8):
        value = (value << 8) | p[i]
    return value


cdef int _check_close_payload(const uint8_t *payload, Py_ssize_t size) except -1:
    """RFC 6455 §5.5.1, §7.4: a close payload is empty or a valid code + UTF-8 reason."""
    cdef unsigned code
    cdef uint32_t state = 0
    if size == 0:
        return 0
    if size == 1:
        raise ProtocolError("close frame payload of 1 byte")
    code = (<unsigned>payload[0] << 8) | payload[1]
    if not _is_valid_close_code(code):  # RFC 6455 §7.4, the rule in _rules
        raise ProtocolError(f"invalid close code {code}")
    if not fastws_utf8_feed(&state, payload + 2, size - 2) or state != 0:
        raise InvalidUTF8("invalid UTF-8 in close reason")
    return 0


# -- encoding --------------------------------------------------------------

# Masking keys come from os.urandom (RFC 6455 §5.3: unpredictable), drawn 4 KiB
# at a time so that a client does not pay a system call per frame.
cdef bytes _key_pool = b""
cdef Py_ssize_t _key_pos = 0


cdef void _next_key(uint8_t *key) except *:
    global _key_pool, _key_pos
    if _key_pos + 4 > PyBytes_GET_SIZE(_key_pool):
        _key_pool = os.urandom(4096)
        _key_pos = 0
    memcpy(key, PyBytes_AS_STRING(_key_pool) + _key_pos, 4)
    _key_pos += 4


cdef int _check_control(int opcode, bint fin, bint rsv1, Py_ssize_t length) except -1:
    """RFC 6455 §5.5: control frames are never fragmented, never compressed, short."""
    if opcode >= OP_CLOSE:
        if not fin:
            raise ValueError("control frames cannot be fragmented")
        if rsv1:
            raise ValueError("control frames cannot set RSV1")
        if length > MAX_CONTROL_PAYLOAD:
            raise ValueError(f"control frame payload longer than {MAX_CONTROL_PAYLOAD} bytes")
    return 0


cdef inline Py_ssize_t _header_size(Py_ssize_t length, bint mask):
    cdef Py_ssize_t size = 2 if length < 126 else (4 if length < 65536 else 10)
    return size + 4 if mask else size


cdef Py_ssize_t _write_frame(uint8_t *out, uint8_t first, const uint8_t *data, Py_ssize_t length,
                             bint mask, const uint8_t *key):
    """Write one frame at ``out``; return its size."""
    cdef Py_ssize_t pos = 2
    cdef uint8_t masked = 0x80 if mask else 0
    cdef int i
    out[0] = first
    if length < 126:
        out[1] = masked | <uint8_t>length
    elif length < 65536:
        out[1] = masked | 126
        out[2] = <uint8_t>(length >> 8)
        out[3] = <uint8_t>length
        pos = 4
    else:
        out[1] = masked | 127
        for i in range(8):
            out[2 + i] = <uint8_t>((<uint64_t>length) >> (56 - 8 * i))
        pos = 10
    if mask:
        memcpy(out + pos, key, 4)
        pos += 4
        fastws_mask(data, out + pos, length, key, 0)
    else:
        memcpy(out + pos, data, length)
    return pos + length


cdef inline int _get_key(object mask_key, uint8_t *key) except -1:
    if mask_key is None:
        _next_key(key)
    else:
        _read_mask(mask_key, key, "mask_key")
    return 0


cdef bytes _encode(int opcode, _Bytes payload, Py_ssize_t max_frame_size, bint fin, bint rsv1,
                   bint mask, object mask_key):
    """Encode ``payload`` as frames of at most ``max_frame_size`` bytes: the first
    carries the opcode and RSV1, the rest are continuations, the last has ``fin``."""
    cdef const uint8_t *data = payload.ptr
    cdef Py_ssize_t length = payload.size
    cdef uint8_t key[4]
    cdef Py_ssize_t full = length // max_frame_size
    cdef Py_ssize_t tail = length - full * max_frame_size
    cdef Py_ssize_t total = full * (_header_size(max_frame_size, mask) + max_frame_size)
    if tail or length == 0:
        total += _header_size(tail, mask) + tail
    cdef bytes out = PyBytes_FromStringAndSize(NULL, total)
    cdef uint8_t *cursor = <uint8_t *>PyBytes_AS_STRING(out)
    cdef uint8_t first = opcode | (0x40 if rsv1 else 0)
    cdef Py_ssize_t start = 0, chunk
    while True:
        chunk = min(max_frame_size, length - start)
        if start + chunk >= length and fin:
            first |= 0x80
        if mask:
            _get_key(mask_key, key)
        cursor += _write_frame(cursor, first, data + start, chunk, mask, key)
        first = OP_CONT
        start += chunk
        if start >= length:
            return out


def encode_frame(opcode, payload, *, fin=True, rsv1=False, mask=False, mask_key=None):
    # Arguments in signature order, as the Python twin (see _rules).
    cdef int op = _opcode_of(opcode)
    cdef _Bytes data = _bytes_of(payload, AS_PAYLOAD, "payload")
    cdef bint c_fin = fin
    cdef bint c_rsv1 = rsv1
    cdef bint c_mask = mask
    _check_control(op, c_fin, c_rsv1, data.size)
    return _encode(op, data, data.size if data.size else 1, c_fin, c_rsv1, c_mask, mask_key)


def encode_message(opcode, payload, *, mask=False, max_frame_size=_MAX_FRAME_SIZE, rsv1=False, mask_key=None):
    cdef int op = _opcode_of(opcode)
    cdef _Bytes data = _bytes_of(payload, AS_PAYLOAD, "payload")
    cdef bint c_mask = mask
    cdef Py_ssize_t frame_size = _frame_size_of(max_frame_size)
    cdef bint c_rsv1 = rsv1
    if op >= OP_CLOSE or data.size <= frame_size:
        _check_control(op, True, c_rsv1, data.size)
        frame_size = data.size if data.size else 1
    return _encode(op, data, frame_size, True, c_rsv1, c_mask, mask_key)
