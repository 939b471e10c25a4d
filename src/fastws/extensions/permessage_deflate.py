"""permessage-deflate (RFC 7692): negotiation, and bounded (de)compression.

A compressed message has RSV1 on its first frame; its payload is raw DEFLATE
data whose final empty block (``00 00 ff ff``) is removed by the sender and put
back by the receiver (§7.2.1, §7.2.2). With context takeover, one LZ77 window
spans all messages in a direction; ``*_no_context_takeover`` resets it per
message.

Memory: zlib states are created on first use and dropped after each message
when there is no context takeover, so an idle connection holds none. With the
defaults a connection keeps a compressor of about 18 KiB (window 2^11, memLevel
3) instead of about 270 KiB with zlib's defaults (window 2^15, memLevel 8);
large messages get a faster compressor of their own (``large_message``). The
decompressor (about 11 KiB with a 2^12 window: zlib's fixed ~7 KiB and the
window) is not kept between messages: the last window of plaintext is, at
most 4 KiB, and the next message's decompressor starts from it (``zdict``),
which costs ~0.35 µs for a 1 KiB message.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Optional, Union

from ..exceptions import InvalidHandshake, MessageTooBig, ProtocolError

__all__ = ["PerMessageDeflate", "Deflate", "parse_extensions", "NAME", "SERVER_DEFAULT", "CLIENT_DEFAULT"]

NAME = "permessage-deflate"
"""The extension token in Sec-WebSocket-Extensions (RFC 7692 §7)."""
_TRAILER = b"\x00\x00\xff\xff"
_PARAMETERS = (
    "server_no_context_takeover",
    "client_no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
)


def parse_extensions(values: list[str]) -> list[tuple[str, list[tuple[str, Optional[str]]]]]:
    """Parse ``Sec-WebSocket-Extensions`` values into ``[(name, [(param, value)])]``.

    Grammar (RFC 6455 §9.1): comma-separated extensions, each a token followed
    by ``;param`` or ``;param=value`` (value a token or a quoted string)."""
    result = []
    for value in values:
        for item in _split_outside_quotes(value, ","):
            if not item.strip():
                continue
            name, *params = _split_outside_quotes(item, ";")
            parsed = []
            for param in params:
                key, equals, raw = param.partition("=")
                key, raw = key.strip(), raw.strip()
                if equals and len(raw) >= 2 and raw[0] == raw[-1] == '"':
                    raw = raw[1:-1]
                parsed.append((key.lower(), raw if equals else None))
            result.append((name.strip().lower(), parsed))
    return result


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _window_bits(value: Optional[str]) -> Optional[int]:
    """A window-bits value must be a decimal 8..15 without leading zeros (§7.1.2)."""
    if value is None or not (value.isascii() and value.isdigit()) or value != str(int(value)):
        return None  # isascii: str.isdigit() also admits "³", which int() rejects
    if not 8 <= int(value) <= 15:
        return None
    return int(value)


@dataclass(frozen=True)
class PerMessageDeflate:
    """permessage-deflate settings, for ``serve(compression=...)`` and ``connect(compression=...)``.

    - ``server_no_context_takeover`` / ``client_no_context_takeover``: ask that
      the server's / client's compression context be reset after each message.
    - ``server_max_window_bits`` / ``client_max_window_bits``: LZ77 window
      (9..15). Smaller windows use less memory. A peer asking for 8 (which zlib
      cannot compress with) is accepted and sent uncompressed messages.
    - ``threshold``: messages smaller than this many bytes are sent uncompressed.
    - ``level``: zlib compression level.
    - ``mem_level`` / ``compressor_window_bits``: zlib memory level and window
      of the compressor a connection keeps between messages (the window at most
      the negotiated one, which a sender may always undercut; ``None``: the
      negotiated one). Together they set the memory per connection.
    - ``large_message`` / ``large_mem_level``: a message of at least
      ``large_message`` bytes is compressed alone, with the whole negotiated
      window, by a compressor with ``large_mem_level`` made for it and freed
      after it: zlib's speed depends on memLevel and window (a 64 KiB JSON
      message: 0.89 ms at 8 and 4 KiB, 1.40 ms at 3 and 2 KiB). The next
      message starts with an empty window (a sender may reset at will).
      ``None``: every message goes through the connection's compressor.
    - ``keep_decompressor``: keep the decompressor between messages (about
      11 KiB with a 2^12 window) instead of the last window of received
      plaintext (at most 2^window bytes), from which the next message's
      decompressor is rebuilt (~0.35 µs for a 1 KiB message).
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: Optional[int] = 12
    client_max_window_bits: Optional[int] = 12
    threshold: int = 0
    level: int = 6
    mem_level: int = 3
    compressor_window_bits: Optional[int] = 11
    large_message: Optional[int] = 16384
    large_mem_level: int = 8
    keep_decompressor: bool = False
    zlib: Any = zlib
    """The deflate implementation: any module with zlib's ``compressobj``,
    ``decompressobj``, ``error`` and constants, e.g. ``isal.isal_zlib`` or
    ``zlib_ng.zlib_ng`` from PyPI, which compress 1.4-10x faster (README)."""

    def __post_init__(self) -> None:
        for name in ("server_max_window_bits", "client_max_window_bits", "compressor_window_bits"):
            bits = getattr(self, name)
            if bits is not None and not 9 <= bits <= 15:
                raise ValueError(f"{name} must be between 9 and 15")
        for name in ("mem_level", "large_mem_level"):
            if not 1 <= getattr(self, name) <= 9:
                raise ValueError(f"{name} must be between 1 and 9")

    # -- server side -------------------------------------------------------

    def accept_offer(self, values: list[str]) -> Optional[tuple[str, Deflate]]:
        """Pick the first acceptable permessage-deflate offer (RFC 7692 §5, §7.1).

        Returns the response header value and the session, or ``None`` to decline
        every offer (the connection then goes on uncompressed)."""
        for name, params in parse_extensions(values):
            if name != NAME:
                continue
            accepted = self._accept_one(params)
            if accepted is not None:
                return accepted
        return None

    def _accept_one(self, params: list[tuple[str, Optional[str]]]) -> Optional[tuple[str, Deflate]]:
        names = [key for key, _ in params]
        if len(set(names)) != len(names) or any(key not in _PARAMETERS for key in names):
            return None  # §7.1: decline offers with unknown or repeated parameters
        offer = dict(params)
        for flag in ("server_no_context_takeover", "client_no_context_takeover"):
            if flag in offer and offer[flag] is not None:
                return None
        server_bits = 15
        if "server_max_window_bits" in offer:
            offered = _window_bits(offer["server_max_window_bits"])
            if offered is None:
                return None
            server_bits = offered
        if self.server_max_window_bits is not None:
            server_bits = min(server_bits, self.server_max_window_bits)
        client_bits = 15
        answer_client_bits = False
        if "client_max_window_bits" in offer:
            raw = offer["client_max_window_bits"]
            offered_client = 15 if raw is None else _window_bits(raw)
            if offered_client is None:
                return None
            client_bits = offered_client
            if self.client_max_window_bits is not None:
                client_bits = min(client_bits, self.client_max_window_bits)
                answer_client_bits = True
        server_reset = self.server_no_context_takeover or "server_no_context_takeover" in offer
        client_reset = self.client_no_context_takeover or "client_no_context_takeover" in offer
        response = [NAME]
        if server_reset:
            response.append("server_no_context_takeover")
        if client_reset:
            response.append("client_no_context_takeover")
        if server_bits < 15 or "server_max_window_bits" in offer:
            response.append(f"server_max_window_bits={server_bits}")
        if answer_client_bits:
            response.append(f"client_max_window_bits={client_bits}")
        session = Deflate(
            send_window_bits=server_bits,
            receive_window_bits=client_bits,
            send_reset=server_reset,
            receive_reset=client_reset,
            settings=self,
        )
        return "; ".join(response), session

    # -- client side -------------------------------------------------------

    def offer(self) -> str:
        """The client's ``Sec-WebSocket-Extensions`` offer."""
        parts = [NAME]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        if self.server_max_window_bits is not None:
            parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.client_max_window_bits is not None:
            parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        else:
            parts.append("client_max_window_bits")  # we can honour any limit the server sets
        return "; ".join(parts)

    def accept_response(self, value: str) -> Deflate:
        """Check the server's answer to our offer (RFC 7692 §7.1); fail the handshake if invalid."""
        extensions = parse_extensions([value])
        if len(extensions) != 1 or extensions[0][0] != NAME:
            raise InvalidHandshake(f"unexpected extensions in response: {value!r}")
        params = extensions[0][1]
        names = [key for key, _ in params]
        if len(set(names)) != len(names) or any(key not in _PARAMETERS for key in names):
            raise InvalidHandshake(f"invalid permessage-deflate response: {value!r}")
        answer = dict(params)
        for flag in ("server_no_context_takeover", "client_no_context_takeover"):
            if flag in answer and answer[flag] is not None:
                raise InvalidHandshake(f"invalid permessage-deflate response: {value!r}")
        if self.server_no_context_takeover and "server_no_context_takeover" not in answer:
            raise InvalidHandshake("server ignored server_no_context_takeover")
        server_bits = 15
        if "server_max_window_bits" in answer:
            bits = _window_bits(answer["server_max_window_bits"])
            if bits is None or (self.server_max_window_bits is not None and bits > self.server_max_window_bits):
                raise InvalidHandshake(f"invalid server_max_window_bits in {value!r}")
            server_bits = bits
        elif self.server_max_window_bits is not None:
            raise InvalidHandshake("server ignored server_max_window_bits")
        client_bits = self.client_max_window_bits or 15
        if "client_max_window_bits" in answer:
            bits = _window_bits(answer["client_max_window_bits"])
            if bits is None or bits > client_bits:
                raise InvalidHandshake(f"invalid client_max_window_bits in {value!r}")
            client_bits = bits
        return Deflate(
            send_window_bits=client_bits,
            receive_window_bits=server_bits,
            send_reset=self.client_no_context_takeover or "client_no_context_takeover" in answer,
            receive_reset="server_no_context_takeover" in answer,
            settings=self,
        )


SERVER_DEFAULT = PerMessageDeflate()
"""What ``serve()`` accepts by default: compression on, 4 KiB windows both ways
(the client's only when it lets us set it); the compressor a connection keeps
uses 2 KiB and zlib memLevel 3, a message from 16 KiB gets its own with memLevel 8."""

CLIENT_DEFAULT = PerMessageDeflate(server_max_window_bits=None, client_max_window_bits=None)
"""What ``connect()`` offers by default: any window the server likes, which every
server can accept."""


class Deflate:
    """One connection's negotiated permessage-deflate session."""

    __slots__ = (
        "send_window_bits",
        "receive_window_bits",
        "send_reset",
        "receive_reset",
        "settings",
        "can_compress",
        "_encoder",
        "_decoder",
        "_history",
        "_compressed",
    )

    def __init__(
        self,
        *,
        send_window_bits: int,
        receive_window_bits: int,
        send_reset: bool,
        receive_reset: bool,
        settings: PerMessageDeflate,
    ) -> None:
        self.send_window_bits = send_window_bits
        # Inflating with a larger window than the sender's is always safe; zlib
        # has no raw 8-bit window, so 8 is read with 9.
        self.receive_window_bits = max(receive_window_bits, 9)
        self.send_reset = send_reset
        self.receive_reset = receive_reset
        self.settings = settings
        # zlib cannot compress with an 8-bit window; compressing is optional per
        # message (RSV1), so with that limit every message simply goes uncompressed.
        self.can_compress = send_window_bits >= 9
        self._encoder: Any = None
        self._decoder: Any = None
        # With context takeover and no kept decompressor: the last window of
        # received plaintext, which the peer's next message may refer back to.
        self._history = b""
        self._compressed = False  # since the last release_if_idle()

    def compresses(self, size: int) -> bool:
        """Whether a message of ``size`` (its ``len()``) is sent compressed: the
        negotiated window allows it and it reaches ``threshold``."""
        return self.can_compress and size >= self.settings.threshold

    def _is_large(self, data: Union[bytes, bytearray, memoryview]) -> bool:
        large = self.settings.large_message
        return large is not None and len(data) >= large

    def _new_encoder(self, mem_level: int, window_bits: int) -> Any:
        library = self.settings.zlib
        return library.compressobj(self.settings.level, library.DEFLATED, -window_bits, mem_level)

    def _deflate(self, encoder: Any, data: Union[bytes, bytearray, memoryview]) -> bytes:
        compressed = encoder.compress(data) + encoder.flush(self.settings.zlib.Z_SYNC_FLUSH)
        # §7.2.1: drop the 4-byte empty block a sync flush ends with.
        return compressed[:-4] if compressed.endswith(_TRAILER) else compressed

    def compress(self, data: Union[bytes, bytearray, memoryview]) -> bytes:
        """Compress one message; the caller sets RSV1 on its first frame."""
        self._compressed = True
        if self._is_large(data):
            # Alone, by a compressor made for it. The peer's window now holds
            # this message, which the connection's compressor never saw: the
            # next message must not refer back past it, so that one restarts.
            self._encoder = None
            return self._deflate(self._new_encoder(self.settings.large_mem_level, self.send_window_bits), data)
        encoder = self._encoder
        if encoder is None:
            kept = self.settings.compressor_window_bits
            window = self.send_window_bits if kept is None else min(kept, self.send_window_bits)
            encoder = self._new_encoder(self.settings.mem_level, window)
        self._encoder = None if self.send_reset else encoder
        return self._deflate(encoder, data)

    def compress_alone(self, data: Union[bytes, bytearray, memoryview]) -> bytes:
        """Compress one message with a fresh window, leaving this session's
        context untouched: the result refers to nothing sent before it, so any
        session with the same (or a larger) send window may send it, whatever
        context the peer keeps. Used for messages shared by many connections."""
        mem_level = self.settings.large_mem_level if self._is_large(data) else self.settings.mem_level
        return self._deflate(self._new_encoder(mem_level, self.send_window_bits), data)

    def reset_compressor(self) -> None:
        """Start the next compressed message with an empty window."""
        self._encoder = None

    def release_if_idle(self) -> None:
        """Drop the compressor if it compressed nothing since the last call.

        Called at each ping (``Connection.send_ping``): a connection that sent
        no compressed message for a whole keepalive interval gives back its
        compressor's memory (about 10 KiB with the defaults, far more with zlib's
        own). A sender may always start a message with an empty window, whatever
        was negotiated; only the compression of the next message is a little
        worse. (The decompressor is not kept between messages at all unless
        ``keep_decompressor``; see ``decompress``.)"""
        if self._compressed:
            self._compressed = False
        else:
            self._encoder = None

    def decompress(self, data: bytes, max_size: Optional[int]) -> bytes:
        """Inflate one message, producing at most ``max_size`` bytes.

        A message that would inflate past the limit raises MessageTooBig (1009)
        after producing at most ``max_size + 1`` bytes: a decompression bomb never
        gets to allocate its full size. Corrupt data raises ProtocolError (1007
        is for text; broken DEFLATE is a protocol error, 1002).

        With context takeover the peer's next message may refer back into the
        last window of plaintext (RFC 7692 §7.2.3.2 lets it reach the whole
        window). Between messages only that window is kept, and the next
        decompressor is primed with it (``zdict``): the same output as a kept
        decompressor, for at most 2^window bytes instead of ~7 KiB more."""
        decoder = self._decoder
        if decoder is None:
            library, history = self.settings.zlib, self._history
            if history:
                decoder = library.decompressobj(-self.receive_window_bits, history)
            else:
                decoder = library.decompressobj(-self.receive_window_bits)
        limit = 0 if max_size is None else max_size + 1
        try:
            # §7.2.2: put back the empty block the sender removed.
            output = decoder.decompress(data + _TRAILER, limit)
        except self.settings.zlib.error as exc:
            raise ProtocolError(f"invalid compressed data: {exc}") from None
        if max_size is not None and (len(output) > max_size or decoder.unconsumed_tail):
            self._decoder = None
            raise MessageTooBig(f"message inflates past the limit of {max_size} bytes")
        if self.receive_reset:
            self._decoder = None
        elif self.settings.keep_decompressor:
            self._decoder = decoder
        else:
            # Keep what the next message may refer back to, not the decompressor.
            self._decoder = None
            window = 1 << self.receive_window_bits
            self._history = output[-window:] if len(output) >= window else (self._history + output)[-window:]
        return output
