"""TLS for the asyncio server, in one light object per connection.

asyncio's own TLS layer (``SSLProtocol``) keeps a 256 KiB read buffer for
every connection, so an idle ``wss://`` connection costs about 280 KiB where
a plain one costs a few. ``TLSLayer`` does the same job with ``ssl.SSLObject``
over two memory BIOs and no buffer of its own: the loop reads into one buffer
per thread, those bytes are written into OpenSSL and the plaintext is read
out of it at once, so an idle
connection holds only what OpenSSL keeps (about 16 KiB, its record buffers
released between reads).

To the event loop a ``TLSLayer`` is the protocol; to the WebSocket protocol
above it, the transport. The WebSocket protocol sees its transport at TCP
accept (its open timeout covers the TLS handshake too) and its first bytes
once the TLS handshake is done; what it writes before then waits for the
handshake. Closing sends TLS's close_notify and closes TCP without waiting for
the peer's (as HTTPS servers do); closing during the TLS handshake aborts.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from typing import Any, Callable, Optional

from .protocol import WebSocket, receive_buffer

__all__ = ["TLSLayer", "tls_factory"]

READ_SIZE = 16384
"""Plaintext asked of OpenSSL per read: one TLS record's worth, all it returns at once."""

logger = logging.getLogger("fastws.server")


class TLSLayer(asyncio.BufferedProtocol, asyncio.Transport):
    """One server connection's TLS: the loop's protocol, the application's transport."""

    __slots__ = (
        "_context",
        "_app",
        "_raw",
        "_incoming",
        "_outgoing",
        "_ssl",
        "_handshaking",
        "_closing",
        "_early_writes",
    )

    def __init__(self, context: ssl_module.SSLContext, app: WebSocket) -> None:
        self._context = context
        self._app = app
        self._raw: Optional[asyncio.Transport] = None
        self._incoming = ssl_module.MemoryBIO()
        self._outgoing = ssl_module.MemoryBIO()
        self._ssl: Optional[ssl_module.SSLObject] = None
        self._handshaking = True
        self._closing = False
        self._early_writes: Optional[list[bytes]] = None  # what the application wrote during the TLS handshake

    # -- the loop's side: a protocol ------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._raw = transport  # type: ignore[assignment]
        self._ssl = self._context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._app.connection_made(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return receive_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        if self._ssl is None:
            return
        self._incoming.write(receive_buffer()[:nbytes])
        if self._handshaking and not self._handshake():
            return
        self._read_plaintext()

    def eof_received(self) -> bool:
        # TCP ended without close_notify (a truncation TLS would flag; browsers
        # and most clients do it, so it is an ordinary end of the stream here).
        if self._handshaking or self._closing:
            return False
        return bool(self._app.eof_received())

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._ssl = None
        self._early_writes = None
        self._app.connection_lost(exc)

    def pause_writing(self) -> None:
        self._app.pause_writing()

    def resume_writing(self) -> None:
        self._app.resume_writing()

    # -- TLS ------------------------------------------------------------------

    def _handshake(self) -> bool:
        """Advance the TLS handshake; True once it is done."""
        assert self._ssl is not None and self._raw is not None
        try:
            self._ssl.do_handshake()
        except ssl_module.SSLWantReadError:
            self._send_records()
            return False
        except (ssl_module.SSLError, ssl_module.CertificateError) as exc:
            self._send_records()  # the alert, if OpenSSL made one
            logger.debug("%s TLS handshake failed: %s", self._raw.get_extra_info("peername"), exc)
            self._raw.close()
            return False
        self._handshaking = False
        self._send_records()
        early, self._early_writes = self._early_writes, None
        if early and not self._closing:
            self.write(b"".join(early))
        return True

    def _read_plaintext(self) -> None:
        """Decrypt what has arrived and hand it to the application in one piece."""
        sslobj = self._ssl
        assert sslobj is not None and self._raw is not None
        incoming = self._incoming
        chunks = []
        ended = False
        # Read while OpenSSL has bytes left: a read of nothing raises, and
        # that costs more than the read of a small message itself.
        while incoming.pending or sslobj.pending():
            try:
                chunk = sslobj.read(READ_SIZE)
            except ssl_module.SSLWantReadError:
                break
            except ssl_module.SSLZeroReturnError:  # the peer's close_notify
                ended = True
                break
            except ssl_module.SSLError as exc:
                logger.debug("%s TLS error: %s", self._raw.get_extra_info("peername"), exc)
                self._raw.abort()
                return
            if not chunk:
                ended = True
                break
            chunks.append(chunk)
        if self._outgoing.pending:  # a TLS 1.3 key update, a session ticket...
            self._send_records()
        if chunks and not self._closing:
            self._app.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))
        if ended and not self._closing and self._ssl is not None:
            if not self._app.eof_received():
                self.close()

    def _send_records(self) -> None:
        assert self._raw is not None
        if self._outgoing.pending:
            self._raw.write(self._outgoing.read())

    # -- the application's side: a transport ----------------------------------

    def write(self, data: Any) -> None:
        self.writelines((data,))

    def writelines(self, list_of_data: Any) -> None:
        """Encrypt each buffer in turn (no join: a large message's buffers
        are not copied into one first), then write the records at once."""
        sslobj = self._ssl
        if sslobj is None or self._closing:
            return
        if self._handshaking:
            if self._early_writes is None:
                self._early_writes = []
            self._early_writes.extend(bytes(data) for data in list_of_data)
            return
        try:
            for data in list_of_data:
                view = memoryview(data).cast("B")
                while view:
                    view = view[sslobj.write(view) :]
        except ssl_module.SSLError as exc:  # e.g. writing after the peer's close_notify
            assert self._raw is not None
            logger.debug("%s TLS error on write: %s", self._raw.get_extra_info("peername"), exc)
            self.abort()
            return
        self._send_records()

    def can_write_eof(self) -> bool:
        return False  # TLS has close_notify, not half-close

    def write_eof(self) -> None:
        raise NotImplementedError("a TLS connection cannot be half-closed")

    def close(self) -> None:
        raw = self._raw
        if raw is None or self._closing:
            return
        self._closing = True
        if self._handshaking or self._ssl is None:
            raw.abort()
            return
        try:
            self._ssl.unwrap()  # queues our close_notify; we do not wait for the peer's
        except ssl_module.SSLError:
            pass
        self._send_records()
        raw.close()

    def abort(self) -> None:
        self._closing = True
        if self._raw is not None:
            self._raw.abort()

    def is_closing(self) -> bool:
        return self._closing or self._raw is None or self._raw.is_closing()

    def pause_reading(self) -> None:
        assert self._raw is not None
        self._raw.pause_reading()

    def resume_reading(self) -> None:
        assert self._raw is not None
        self._raw.resume_reading()

    def is_reading(self) -> bool:
        return self._raw is not None and self._raw.is_reading()

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        assert self._raw is not None
        self._raw.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        assert self._raw is not None
        return self._raw.get_write_buffer_limits()

    def get_write_buffer_size(self) -> int:
        return 0 if self._raw is None else self._raw.get_write_buffer_size() + self._outgoing.pending

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        sslobj = self._ssl
        if name == "ssl_object":
            return sslobj
        if name == "sslcontext":
            return self._context
        if name in ("peercert", "cipher", "compression"):
            if sslobj is None or self._handshaking:
                return default
            return sslobj.getpeercert() if name == "peercert" else getattr(sslobj, name)()
        return default if self._raw is None else self._raw.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._app = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._app


def tls_factory(context: ssl_module.SSLContext, factory: Callable[[], WebSocket]) -> Callable[[], TLSLayer]:
    """``factory`` (the server's protocol factory) with TLS in front of each connection."""
    return lambda: TLSLayer(context, factory())
