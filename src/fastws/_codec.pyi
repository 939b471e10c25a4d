"""The codec interface, implemented twice: by ``_codec`` (Cython) and ``_codec_py``
(pure Python). Both must behave identically, byte for byte and error for error;
``.ci/stubtest.sh`` holds both to this file with ``mypy.stubtest``.

Arguments (the rules are in ``_rules``, shared by both backends): integers may be
anything with ``__index__``; flags are taken by truth value and stored as bools;
bytes-like arguments are any buffer, read as its bytes in C order (a str only
where a payload may be text; ints and lists never). A bad argument raises
TypeError (wrong kind) or ValueError (out of range) with the same message on both
backends, checking arguments in signature order, then the rules that combine them.
"""

from typing import Union

from typing_extensions import Buffer, disjoint_base

__all__ = ["apply_mask", "apply_mask_inplace", "Frame", "FrameParser", "encode_frame", "encode_message"]

_Payload = Union[Buffer, str]

def apply_mask(data: Buffer, mask: Buffer) -> bytes:
    """Return ``data`` XOR-ed with the repeating 4-byte ``mask`` (RFC 6455 §5.3)."""

def apply_mask_inplace(buffer: Buffer, mask: Buffer) -> None:
    """XOR a writable, C-contiguous buffer (bytearray, writable memoryview) with
    ``mask`` in place; TypeError for any other buffer."""

@disjoint_base
class Frame:
    """A frame, or in message mode a whole message.

    ``payload`` is ``bytes``, except for a complete text message in message mode,
    which is already decoded to ``str``. ``opcode`` must be one of the six opcodes
    (ValueError otherwise), also when assigned; ``fin`` and ``rsv1`` become bools.
    """

    opcode: int
    payload: Union[bytes, str]
    fin: bool
    rsv1: bool
    def __init__(self, opcode: int, payload: Union[bytes, str], fin: bool = True, rsv1: bool = False) -> None: ...

@disjoint_base
class FrameParser:
    """Incremental parser of a stream of WebSocket frames.

    ``feed()`` accepts chunks of any size and returns the frames (``assemble=False``)
    or messages (``assemble=True``) completed by that chunk. Control frames are
    returned as soon as they arrive, also in the middle of a fragmented message.
    On bad input it raises ProtocolError (or InvalidUTF8, MessageTooBig) whose
    ``frames`` lists what was decoded before the error; the parser then stays failed.

    The limits are ``None`` or integers >= 0; a limit above 2**63 - 1 is no limit,
    as no frame is that long (RFC 6455 §5.2). The options are read-only.
    """

    @property
    def is_client(self) -> bool: ...
    @property
    def max_message_size(self) -> int | None: ...
    @property
    def max_frame_size(self) -> int | None: ...
    @property
    def assemble(self) -> bool: ...
    @property
    def rsv1_allowed(self) -> bool: ...
    def __init__(
        self,
        *,
        is_client: bool = False,
        max_message_size: int | None = ...,
        max_frame_size: int | None = None,
        assemble: bool = True,
        rsv1_allowed: bool = False,
    ) -> None: ...
    def feed(self, data: Buffer, size: int | None = None) -> list[Frame]:
        """Parse the next bytes of the stream: ``data``, or only its first
        ``size`` bytes (a read into a larger buffer, without slicing it).
        ``size`` counts bytes, not items of a view with a wider format;
        outside 0 to the byte count it is a ValueError."""
    def payload_buffer(self) -> memoryview | None:
        """Where the next bytes of the stream may be read to directly: the rest
        of the current frame's payload, when the frame goes straight into its
        payload object (a data frame delivered whole, not text being
        validated, small or half here; a client's frame from its server of up
        to 16 MiB from its header on). Read into it (``sock.recv_into``), then
        call ``payload_received(n)``: the same as ``feed()`` of those bytes,
        one copy fewer. None otherwise: use ``feed()``."""

    def payload_received(self, size: int) -> list[Frame]:
        """``size`` bytes were written at the start of the last
        ``payload_buffer()``; parse them as ``feed()`` would. ValueError if no
        buffer is outstanding (a ``feed()`` in between discards it) or
        ``size`` exceeds it."""
    @property
    def buffered(self) -> int:
        """Bytes held back: a partial header, payload or fragmented message (0 once failed)."""

    @property
    def failed(self) -> bool:
        """True once a protocol error was raised; later feeds raise it again."""

def encode_frame(
    opcode: int,
    payload: _Payload,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bool = False,
    mask_key: Buffer | None = None,
) -> bytes:
    """Encode one frame. A client masks (``mask=True``) with a fresh random key
    unless ``mask_key`` (4 bytes, read only when masking) is given; a ``str``
    payload is encoded as UTF-8."""

def encode_message(
    opcode: int,
    payload: _Payload,
    *,
    mask: bool = False,
    max_frame_size: int = ...,
    rsv1: bool = False,
    mask_key: Buffer | None = None,
) -> bytes:
    """Encode a whole message, fragmented into frames of at most ``max_frame_size``
    (an integer >= 1) payload bytes: the first carries ``opcode`` (and ``rsv1``),
    the rest are continuations, the last has FIN set. A control message is one
    frame whatever ``max_frame_size`` says (RFC 6455 §5.5)."""
