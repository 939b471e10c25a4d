"""The codec interface, implemented twice: by ``_codec`` (Cython) and ``_codec_py``
(pure Python). Both must behave identically, byte for byte and error for error;
``python -m mypy.stubtest`` holds both to this file.
"""

from typing import Union

from typing_extensions import Buffer

Payload = Union[Buffer, str]

def apply_mask(data: Buffer, mask: Buffer) -> bytes:
    """Return ``data`` XOR-ed with the repeating 4-byte ``mask`` (RFC 6455 §5.3)."""

def apply_mask_inplace(buffer: Buffer, mask: Buffer) -> None:
    """XOR a writable buffer (bytearray, writable memoryview) with ``mask`` in place."""

class Frame:
    """A frame, or in message mode a whole message.

    ``payload`` is ``bytes``, except for a complete text message in message mode,
    which is already decoded to ``str``.
    """

    opcode: int
    payload: Union[bytes, str]
    fin: bool
    rsv1: bool
    def __init__(self, opcode: int, payload: Union[bytes, str], fin: bool = True, rsv1: bool = False) -> None: ...

class FrameParser:
    """Incremental parser of a stream of WebSocket frames.

    ``feed()`` accepts chunks of any size and returns the frames (``assemble=False``)
    or messages (``assemble=True``) completed by that chunk. Control frames are
    returned as soon as they arrive, also in the middle of a fragmented message.
    On bad input it raises ProtocolError (or InvalidUTF8, MessageTooBig) whose
    ``frames`` lists what was decoded before the error; the parser then stays failed.
    """

    is_client: bool
    max_message_size: int | None
    max_frame_size: int | None
    assemble: bool
    rsv1_allowed: bool
    def __init__(
        self,
        *,
        is_client: bool = False,
        max_message_size: int | None = ...,
        max_frame_size: int | None = None,
        assemble: bool = True,
        rsv1_allowed: bool = False,
    ) -> None: ...
    def feed(self, data: Buffer) -> list[Frame]: ...
    @property
    def buffered(self) -> int:
        """Bytes held back: a partial header, payload or fragmented message."""

    @property
    def failed(self) -> bool:
        """True once a protocol error was raised; later feeds raise it again."""

def encode_frame(
    opcode: int,
    payload: Payload,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bool = False,
    mask_key: Buffer | None = None,
) -> bytes:
    """Encode one frame. A client masks (``mask=True``) with a fresh random key
    unless ``mask_key`` is given; a ``str`` payload is encoded as UTF-8."""

def encode_message(
    opcode: int,
    payload: Payload,
    *,
    mask: bool = False,
    max_frame_size: int = ...,
    rsv1: bool = False,
    mask_key: Buffer | None = None,
) -> bytes:
    """Encode a whole message, fragmented into frames of at most ``max_frame_size``
    payload bytes: the first carries ``opcode`` (and ``rsv1``), the rest are
    continuations, the last has FIN set."""
