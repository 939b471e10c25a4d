"""Exceptions raised by fastws.

Every protocol error carries the close code the RFC says to send back, so the
layer that catches it can fail the connection correctly without a lookup table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .handshake import Response

__all__ = [
    "WebSocketError",
    "ProtocolError",
    "InvalidUTF8",
    "MessageTooBig",
    "InvalidHandshake",
    "InvalidStatus",
    "InvalidHeader",
    "InvalidURI",
    "InvalidRedirect",
    "ProxyError",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
]


class WebSocketError(Exception):
    """Base class of every exception fastws raises on purpose."""


class ProtocolError(WebSocketError):
    """The peer broke RFC 6455; the connection must be failed with ``code``.

    ``frames`` holds the frames (or messages) that were decoded successfully
    from the same input before the error was found, so no good data is lost.
    """

    code = 1002  # RFC 6455 §7.4.1: protocol error

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if code is not None:
            self.code = code
        self.frames: list = []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, code={self.code})"

    def __eq__(self, other: object) -> bool:
        return (
            type(self) is type(other)
            and self.code == other.code  # type: ignore[attr-defined]
            and self.reason == other.reason  # type: ignore[attr-defined]
        )

    __hash__ = WebSocketError.__hash__


class InvalidUTF8(ProtocolError):
    """A text message or a close reason is not valid UTF-8 (close code 1007)."""

    code = 1007  # RFC 6455 §8.1


class MessageTooBig(ProtocolError):
    """A frame or a message exceeds the configured limit (close code 1009)."""

    code = 1009


class InvalidHandshake(WebSocketError):
    """The opening handshake failed; ``status`` is the HTTP status to answer."""

    def __init__(self, reason: str, status: int = 400, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.headers = headers or []


class InvalidStatus(InvalidHandshake):
    """A client received something other than ``101 Switching Protocols``;
    ``response`` is the whole answer (headers such as Location or Retry-After)."""

    def __init__(self, status: int, reason: str, body: bytes = b"", response: Response | None = None) -> None:
        super().__init__(f"server rejected WebSocket connection: HTTP {status} {reason}", status)
        self.body = body
        self.response = response


class InvalidHeader(WebSocketError, ValueError):
    """fastws was asked to write an HTTP head that breaks RFC 9110/9112, and refused.

    A header name that is not a token, a value with CR, LF, NUL or another
    control character (the makings of response splitting), a status code
    outside 100-599, a reason phrase or request line with CR/LF. Raised by the
    call that introduced the bad piece (``Headers(...)``, ``Headers.add``,
    ``Request``/``Response`` construction, ``ClientHandshake(...)``), so nothing
    partial is sent. ``name`` is the header's name, or "status code", "reason
    phrase", "method", "request target" or "HTTP version"; the message names it
    and where the value goes wrong without echoing the value. ServerHandshake.accept
    turns one from its hooks into InvalidHandshake with status 500 (the cause).
    """

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


class InvalidURI(WebSocketError, ValueError):
    """A URI fastws cannot connect to: not ws:// or wss://, no host, bad port or credentials."""


class InvalidRedirect(InvalidHandshake):
    """A redirect the client will not follow: a loop (more than the allowed number),
    ``wss://`` to ``ws://``, a ``Location`` that is missing or not a WebSocket URI."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason, status)


class ProxyError(WebSocketError, OSError):
    """The proxy refused the tunnel, answered garbage, or closed during its handshake.

    An ``OSError`` so that reconnection treats it like a network error; ``status``
    is the proxy's HTTP status when it answered CONNECT with one (407: credentials).
    """

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status

    def __str__(self) -> str:
        return self.reason


class ConnectionClosed(WebSocketError):
    """The connection is closed; ``code`` and ``reason`` say how.

    ``code`` is 1005 when the peer's close frame had no code and 1006 when the
    connection was lost without a close frame (RFC 6455 §7.1.5).
    """

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class ConnectionClosedOK(ConnectionClosed):
    """Closed cleanly: 1000 (normal), 1001 (going away) or 1005 (a close frame without a code)."""


class ConnectionClosedError(ConnectionClosed):
    """Closed with an error code, or lost without a close handshake."""
