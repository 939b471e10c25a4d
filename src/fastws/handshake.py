"""The opening handshake (RFC 6455 §4), sans I/O.

The server side parses an HTTP/1.1 upgrade request, checks it and builds the
``101 Switching Protocols`` answer, or an error response with the right status.
The client side builds the request and checks the server's answer. Nothing here
reads or writes a socket: callers feed bytes in and write the bytes they get.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Callable, Optional

from .exceptions import InvalidHandshake, InvalidStatus

__all__ = [
    "GUID",
    "MAX_HEADER_SIZE",
    "Headers",
    "Request",
    "Response",
    "HeadParser",
    "accept_key",
    "parse_request",
    "parse_response",
    "ServerHandshake",
    "ClientHandshake",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

MAX_HEADER_SIZE = 16384
"""Limit on an HTTP request or response head (request line + headers): 16 KiB.
Browsers send well under 4 KiB even with cookies; the limit stops a peer from
making the server buffer an endless head (answered with 431)."""

MAX_HEADERS = 128
"""Limit on the number of header lines, for the same reason."""

SERVER_NAME = "fastws"


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key``: base64(SHA-1(key + GUID))."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def generate_key() -> str:
    """A fresh ``Sec-WebSocket-Key``: base64 of 16 random bytes (RFC 6455 §4.1)."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


class Headers:
    """HTTP headers: ordered, repeatable, looked up case-insensitively."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = list(items)

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """The value of ``name``; repeated headers are joined with ", " (RFC 9110 §5.3)."""
        values = self.get_all(name)
        return ", ".join(values) if values else default

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self._items if key.lower() == name]

    def tokens(self, name: str) -> list[str]:
        """The comma-separated tokens of ``name``, lower-cased (Connection, Upgrade...)."""
        return [token.strip().lower() for value in self.get_all(name) for token in value.split(",") if token.strip()]

    def add(self, name: str, value: str) -> None:
        self._items.append((name, value))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.get_all(name))

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self):
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def raw_items(self) -> list[tuple[str, str]]:
        return list(self._items)


@dataclass
class Request:
    """An HTTP request head."""

    method: str
    path: str
    headers: Headers
    version: str = "HTTP/1.1"

    def serialize(self) -> bytes:
        lines = [f"{self.method} {self.path} {self.version}"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass
class Response:
    """An HTTP response: status, headers and an optional body."""

    status: int
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    reason: str = ""

    def __post_init__(self) -> None:
        if not self.reason:
            try:
                self.reason = HTTPStatus(self.status).phrase
            except ValueError:
                self.reason = "Unknown"

    def serialize(self) -> bytes:
        headers = Headers(self.headers)
        if self.status != 101 and "Content-Length" not in headers:
            headers.add("Content-Length", str(len(self.body)))
        lines = [f"HTTP/1.1 {self.status} {self.reason}"]
        lines += [f"{name}: {value}" for name, value in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def error_response(status: int, text: str, headers: Sequence[tuple[str, str]] = ()) -> Response:
    """A short plain-text error answer that closes the connection."""
    all_headers = Headers(headers)
    all_headers.add("Content-Type", "text/plain; charset=utf-8")
    all_headers.add("Connection", "close")
    return Response(status, all_headers, (text + "\n").encode())


class HeadParser:
    """Accumulate bytes until a full HTTP head (ending in an empty line) arrives.

    ``feed()`` returns ``None`` until the head is complete, then ``(head, rest)``
    where ``rest`` holds any bytes that followed it. A head over ``max_size``
    raises InvalidHandshake with status 431.
    """

    def __init__(self, max_size: int = MAX_HEADER_SIZE) -> None:
        self.max_size = max_size
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Optional[tuple[bytes, bytes]]:
        start = max(0, len(self._buffer) - 3)
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n", start)
        if end < 0:
            if len(self._buffer) > self.max_size:
                raise InvalidHandshake("request head too large", 431)
            return None
        if end + 4 > self.max_size:
            raise InvalidHandshake("request head too large", 431)
        head, rest = bytes(self._buffer[: end + 4]), bytes(self._buffer[end + 4 :])
        self._buffer = bytearray()
        return head, rest


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
        raise InvalidHandshake("invalid bytes in head") from None
    lines = text[:-4].split("\r\n")
    if len(lines) - 1 > MAX_HEADERS:
        raise InvalidHandshake("too many headers", 431)
    items = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        # RFC 9112 §5.1: no whitespace between the field name and the colon.
        if not colon or not name or name != name.strip() or not _is_token(name):
            raise InvalidHandshake(f"invalid header line: {line[:60]!r}")
        value = value.strip(" \t")
        if any(ord(c) < 0x20 and c != "\t" or c == "\x7f" for c in value):
            raise InvalidHandshake(f"invalid header value for {name}")
        items.append((name, value))
    return lines[0], items


_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _is_token(text: str) -> bool:
    return all(c in _TOKEN_CHARS for c in text)


def parse_request(head: bytes) -> Request:
    """Parse a request head; malformed input raises InvalidHandshake (400)."""
    request_line, items = _parse_head(head)
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise InvalidHandshake(f"invalid request line: {request_line[:60]!r}")
    method, path, version = parts
    if not version.startswith("HTTP/"):
        raise InvalidHandshake(f"invalid request line: {request_line[:60]!r}")
    return Request(method, path, Headers(items), version)


def parse_response(head: bytes) -> Response:
    """Parse a response head; malformed input raises InvalidHandshake."""
    status_line, items = _parse_head(head)
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    # ASCII digits only: str.isdigit() also admits "³", which int() rejects.
    if not version.startswith("HTTP/1.") or not (len(code) == 3 and code.isascii() and code.isdigit()):
        raise InvalidHandshake(f"invalid status line: {status_line[:60]!r}")
    return Response(int(code), Headers(items), b"", reason or " ")


def _check_key(key: Optional[str]) -> str:
    if key is None:
        raise InvalidHandshake("missing Sec-WebSocket-Key header")
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raw = b""
    if len(raw) != 16:
        raise InvalidHandshake("Sec-WebSocket-Key is not the base64 of 16 bytes")
    return key


# An extension negotiator takes the client's Sec-WebSocket-Extensions offers
# (a list of header values) and returns (value to answer with, session object)
# or None to decline; PerMessageDeflate.accept_offer is one.
ExtensionHook = Callable[[list[str]], Optional[tuple[str, Any]]]
SubprotocolSelector = Callable[[Request, list[str]], Optional[str]]


class ServerHandshake:
    """The server's side of the handshake: check a request, build the answer."""

    def __init__(
        self,
        *,
        subprotocols: Optional[Sequence[str]] = None,
        select_subprotocol: Optional[SubprotocolSelector] = None,
        origins: Optional[Sequence[Optional[str]]] = None,
        extensions: Optional[ExtensionHook] = None,
        server_header: Optional[str] = SERVER_NAME,
    ) -> None:
        self.subprotocols = list(subprotocols or [])
        self.select_subprotocol = select_subprotocol
        self.origins = None if origins is None else list(origins)
        self.extensions = extensions
        self.server_header = server_header

    def accept(self, request: Request) -> tuple[Response, Optional[str], Any]:
        """Check ``request``; return ``(101 response, subprotocol, extension session)``.

        A request that is not a valid WebSocket upgrade raises InvalidHandshake
        carrying the status to answer: 400, 403 (origin), 405 (method), 426
        (version, with ``Sec-WebSocket-Version: 13``).
        """
        headers = request.headers
        if request.method != "GET":
            raise InvalidHandshake(f"method {request.method} is not GET", 405, [("Allow", "GET")])
        if request.version != "HTTP/1.1":
            raise InvalidHandshake(f"{request.version} is not HTTP/1.1", 505)
        if len(headers.get_all("Host")) != 1:
            raise InvalidHandshake("missing or repeated Host header")
        # RFC 6455 §4.2.1: Upgrade contains "websocket", Connection contains
        # "Upgrade", both case-insensitive and possibly among other tokens.
        if "websocket" not in headers.tokens("Upgrade"):
            raise InvalidHandshake(
                "missing 'Upgrade: websocket' header", 426, [("Upgrade", "websocket"), ("Connection", "Upgrade")]
            )
        if "upgrade" not in headers.tokens("Connection"):
            raise InvalidHandshake("missing 'Connection: Upgrade' header")
        keys = headers.get_all("Sec-WebSocket-Key")
        if len(keys) > 1:
            raise InvalidHandshake("repeated Sec-WebSocket-Key header")
        key = _check_key(keys[0] if keys else None)
        if headers.get("Sec-WebSocket-Version") != "13":
            # RFC 6455 §4.4: answer with the versions we support.
            raise InvalidHandshake("unsupported Sec-WebSocket-Version", 426, [("Sec-WebSocket-Version", "13")])
        if self.origins is not None:
            origin = headers.get("Origin")
            if origin not in self.origins:
                raise InvalidHandshake(f"origin {origin!r} is not allowed", 403)

        offered = [token.strip() for value in headers.get_all("Sec-WebSocket-Protocol") for token in value.split(",")]
        offered = [token for token in offered if token]
        subprotocol = self._choose_subprotocol(request, offered)
        extension_value, extension = None, None
        offers = headers.get_all("Sec-WebSocket-Extensions")
        if self.extensions is not None and offers:
            negotiated = self.extensions(offers)
            if negotiated is not None:
                extension_value, extension = negotiated

        response_headers = Headers([("Upgrade", "websocket"), ("Connection", "Upgrade")])
        response_headers.add("Sec-WebSocket-Accept", accept_key(key))
        if subprotocol is not None:
            response_headers.add("Sec-WebSocket-Protocol", subprotocol)
        if extension_value:
            response_headers.add("Sec-WebSocket-Extensions", extension_value)
        if self.server_header:
            response_headers.add("Server", self.server_header)
        return Response(101, response_headers), subprotocol, extension

    def _choose_subprotocol(self, request: Request, offered: list[str]) -> Optional[str]:
        if not offered:
            return None  # a client that offers none is accepted without one
        if self.select_subprotocol is not None:
            chosen = self.select_subprotocol(request, offered)
            if chosen is not None and chosen not in offered:
                raise InvalidHandshake(f"selected subprotocol {chosen!r} was not offered", 500)
            return chosen
        for candidate in self.subprotocols:  # the server's own preference order
            if candidate in offered:
                return candidate
        return None


class ClientHandshake:
    """The client's side of the handshake: build the request, check the answer."""

    def __init__(
        self,
        host: str,
        path: str = "/",
        *,
        subprotocols: Optional[Sequence[str]] = None,
        extra_headers: Optional[Iterable[tuple[str, str]]] = None,
        origin: Optional[str] = None,
        extensions: Optional[str] = None,
        user_agent: Optional[str] = SERVER_NAME,
    ) -> None:
        self.key = generate_key()
        self.subprotocols = list(subprotocols or [])
        self.extensions = extensions
        headers = Headers([("Host", host), ("Upgrade", "websocket"), ("Connection", "Upgrade")])
        headers.add("Sec-WebSocket-Key", self.key)
        headers.add("Sec-WebSocket-Version", "13")
        if origin is not None:
            headers.add("Origin", origin)
        if self.subprotocols:
            headers.add("Sec-WebSocket-Protocol", ", ".join(self.subprotocols))
        if extensions:
            headers.add("Sec-WebSocket-Extensions", extensions)
        if user_agent:
            headers.add("User-Agent", user_agent)
        for name, value in extra_headers or ():
            headers.add(name, value)
        self.request = Request("GET", path, headers)

    def request_bytes(self) -> bytes:
        return self.request.serialize()

    def process_response(self, response: Response) -> tuple[Optional[str], Optional[str]]:
        """Check the server's answer; return ``(subprotocol, extensions)``.

        Anything but a valid 101 raises InvalidStatus (another status) or
        InvalidHandshake (a 101 that breaks RFC 6455 §4.1).
        """
        if response.status != 101:
            raise InvalidStatus(response.status, response.reason, response.body)
        headers = response.headers
        if "websocket" not in headers.tokens("Upgrade"):
            raise InvalidHandshake("response lacks 'Upgrade: websocket'")
        if "upgrade" not in headers.tokens("Connection"):
            raise InvalidHandshake("response lacks 'Connection: Upgrade'")
        if headers.get("Sec-WebSocket-Accept") != accept_key(self.key):
            raise InvalidHandshake("wrong Sec-WebSocket-Accept value")
        subprotocol = headers.get("Sec-WebSocket-Protocol")
        if subprotocol is not None and subprotocol not in self.subprotocols:
            raise InvalidHandshake(f"server chose subprotocol {subprotocol!r}, which was not offered")
        extensions = headers.get("Sec-WebSocket-Extensions")
        if extensions and not self.extensions:
            raise InvalidHandshake(f"server chose extensions {extensions!r}, which were not offered")
        return subprotocol, extensions
