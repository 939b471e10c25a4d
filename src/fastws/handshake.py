"""The opening handshake (RFC 6455 §4), sans I/O.

The server side parses an HTTP/1.1 upgrade request, checks it and builds the
``101 Switching Protocols`` answer, or an error response with the right status.
The client side builds the request and checks the server's answer. Nothing here
reads or writes a socket: callers feed bytes in and write the bytes they get.

Everything written is checked where it comes in (``Headers(...)``,
``Headers.add``, ``Request``/``Response`` construction, the handshake classes)
and once more in ``serialize()``: a header name must be a token and a value
must not hold CR, LF, NUL or any other control character but HTAB (RFC 9110
§5.1, §5.5), or InvalidHeader (a ValueError) is raised and nothing is sent;
SP/HTAB around a value is dropped, as the recipient drops it. The parser
applies the same rules to what it reads, so what fastws parses it can write
back unchanged, and the other way round.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Callable, Optional

from .exceptions import InvalidHandshake, InvalidHeader, InvalidStatus

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
"""Appended to Sec-WebSocket-Key before hashing it into Sec-WebSocket-Accept (RFC 6455 §4.2.2)."""

MAX_HEADER_SIZE = 16384
"""Limit on an HTTP request or response head (request line + headers): 16 KiB.
Browsers send well under 4 KiB even with cookies; the limit stops a peer from
making the server buffer an endless head (answered with 431)."""

MAX_HEADERS = 128
"""Limit on the number of header lines, for the same reason."""

SERVER_NAME = "fastws"

# -- what may be written (RFC 9110 §5.1, §5.5; RFC 9112 §3, §4) --------------
# One compiled regex per check, always with fullmatch: "$" also matches before
# a trailing "\n", the very character these checks keep out.

_TCHAR = "!#$%&'*+.^_`|~0-9A-Za-z-"
_name_ok = re.compile(f"[{_TCHAR}]+").fullmatch
_bad_token_char = re.compile(f"[^{_TCHAR}]").search
# field-value = *field-content (RFC 9110 §5.5): visible ASCII and obs-text
# (0x80-0xFF, written as latin-1) with SP and HTAB only between them. Refused:
# CR, LF and NUL (they would end the line: header injection), every other
# control character and DEL (invalid too; a strict peer, fastws included,
# rejects them), and anything above U+00FF (no latin-1 byte for it). The empty
# value is allowed. SP/HTAB at either end is optional whitespace around the
# value, not part of it (RFC 9112 §5.1: a recipient strips it), so Headers
# stores the value without it: what is stored is what the peer reads.
_value_ok = re.compile(r"(?![ \t])[\t\x20-\x7e\x80-\xff]*(?<![ \t])").fullmatch
_bad_value_char = re.compile(r"[^\t\x20-\x7e\x80-\xff]").search
# reason-phrase = *( HTAB / SP / VCHAR / obs-text ) (RFC 9112 §4).
_reason_ok = re.compile(r"[\t\x20-\x7e\x80-\xff]*").fullmatch
# request-target (RFC 9112 §3.2): no whitespace or control character, or the
# request line would split differently; obs-text goes through as latin-1, as
# parse_request reads it.
_target_ok = re.compile(r"[\x21-\x7e\x80-\xff]+").fullmatch
_bad_target_char = re.compile(r"[^\x21-\x7e\x80-\xff]").search
_version_ok = re.compile(r"HTTP/[0-9]\.[0-9]").fullmatch  # RFC 9112 §2.3


def _short(text: str) -> str:
    """``text`` for an error message: its repr, cut at 40 characters."""
    return repr(text) if len(text) <= 40 else f"{text[:40]!r}... ({len(text)} characters)"


def _problem(text: str, bad_char: Optional[Callable[[str], Optional[re.Match]]], otherwise: str) -> str:
    """Where ``text`` breaks its rule, without quoting it (it may be megabytes)."""
    if not text:
        return "it is empty"
    found = bad_char(text) if bad_char is not None else None
    if found is None:
        return otherwise
    char, index = found.group(), found.start()
    if char in "\r\n\0":
        why = "CR, LF and NUL would end the line (header injection)"
    elif ord(char) > 0xFF:
        why = "above U+00FF, no latin-1 byte for it"
    elif char in " \t":
        why = "whitespace is not allowed here"
    else:
        why = "not allowed here"
    return f"{char!r} at index {index} of {len(text)} characters: {why}"


def _field_error(name: object, value: object) -> Exception:
    """The exception for a header that failed the checks (the slow path)."""
    if not isinstance(name, str):
        return TypeError(f"a header name must be str, not {type(name).__name__}")
    if _name_ok(name) is None:
        problem = _problem(name, _bad_token_char, "not a token")
        return InvalidHeader(f"invalid header name {_short(name)}: {problem} (RFC 9110 §5.1: a token)", name)
    if not isinstance(value, str):
        return TypeError(f"the value of header {_short(name)} must be str, not {type(value).__name__}")
    problem = _problem(value, _bad_value_char, "leading or trailing whitespace")
    return InvalidHeader(f"invalid value for header {_short(name)}: {problem} (RFC 9110 §5.5)", name)


def _check_field(name: str, value: str) -> None:
    """Raise InvalidHeader (TypeError for a non-str) unless ``name: value`` can be written as is."""
    try:
        if _name_ok(name) is not None and _value_ok(value) is not None:
            return
    except TypeError:
        pass
    raise _field_error(name, value)


def _stored_value(name: str, value: str) -> str:
    """``value`` as Headers stores it: checked, SP/HTAB at the ends removed (see above)."""
    try:
        if _name_ok(name) is not None:
            if _value_ok(value) is not None:
                return value
            stripped = value.strip(" \t")
            if _value_ok(stripped) is not None:
                return stripped
    except (TypeError, AttributeError):
        pass
    raise _field_error(name, value)


def _check_part(what: str, text: str, ok: Callable[[str], Optional[re.Match]], bad_char, rule: str) -> None:
    """Raise InvalidHeader unless ``text`` (a part of the start line) passes ``ok``."""
    try:
        if ok(text) is not None:
            return
    except TypeError:
        raise TypeError(f"the {what} must be str, not {type(text).__name__}") from None
    raise InvalidHeader(f"invalid {what}: {_problem(text, bad_char, 'malformed')} ({rule})", what)


def _check_status(status: int) -> None:
    """A status code is three digits, 100 to 599 (RFC 9110 §15)."""
    if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
        return
    shown = str(status) if isinstance(status, int) and abs(status) < 10**12 else f"a {type(status).__name__}"
    raise InvalidHeader(f"invalid status code {shown}: not an int from 100 to 599 (RFC 9110 §15)", "status code")


def _head_bytes(start_line: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """The head as sent, each header checked once more: the guard against one
    that bypassed the checks (a list assigned to ``.headers``, an edited ``_items``)."""
    lines = [start_line]
    for name, value in headers:
        _check_field(name, value)
        lines.append(f"{name}: {value}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key``: base64(SHA-1(key + GUID))."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def generate_key() -> str:
    """A fresh ``Sec-WebSocket-Key``: base64 of 16 random bytes (RFC 6455 §4.1)."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


class Headers:
    """HTTP headers: ordered, repeatable, looked up case-insensitively.

    Construction and ``add`` check every header (see the module docstring) and
    raise InvalidHeader, naming it, for one that cannot be written safely.
    SP/HTAB at either end of a value is dropped, as the recipient would drop it.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        if isinstance(items, Headers):
            self._items: list[tuple[str, str]] = list(items._items)  # checked when they came in
            return
        self._items = [(name, _stored_value(name, value)) for name, value in items]

    @classmethod
    def _checked(cls, items: list[tuple[str, str]]) -> Headers:
        """Headers from items already checked by the caller (the parser, fixed names): no second pass."""
        headers = cls.__new__(cls)
        headers._items = items
        return headers

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
        """Append a header; one that cannot be written safely raises InvalidHeader."""
        self._items.append((name, _stored_value(name, value)))

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
    """An HTTP request head.

    The method must be a token, the path (request target) free of whitespace
    and control characters, the version ``HTTP/<digit>.<digit>``; a list of
    pairs for ``headers`` becomes Headers. Anything else raises InvalidHeader.
    """

    method: str
    path: str
    headers: Headers
    version: str = "HTTP/1.1"

    def __post_init__(self) -> None:
        self._check_request_line()
        if not isinstance(self.headers, Headers):
            self.headers = Headers(self.headers)

    def _check_request_line(self) -> None:
        _check_part("method", self.method, _name_ok, _bad_token_char, "RFC 9110 §9.1: a token")
        _check_part("request target", self.path, _target_ok, _bad_target_char, "RFC 9112 §3.2")
        _check_part("HTTP version", self.version, _version_ok, None, "RFC 9112 §2.3: HTTP/<digit>.<digit>")

    def serialize(self) -> bytes:
        """The head as bytes; fields changed since construction are checked again."""
        self._check_request_line()
        return _head_bytes(f"{self.method} {self.path} {self.version}", self.headers)


@dataclass
class Response:
    """An HTTP response: status, headers and an optional body.

    The status must be an int from 100 to 599 and the reason phrase free of
    CR, LF and other control characters (HTAB allowed); an empty reason becomes
    the standard phrase. A list of pairs for ``headers`` becomes Headers.
    Anything else raises InvalidHeader.
    """

    status: int
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    reason: str = ""

    def __post_init__(self) -> None:
        _check_status(self.status)
        if not self.reason:
            try:
                self.reason = HTTPStatus(self.status).phrase
            except ValueError:
                self.reason = "Unknown"
        _check_part("reason phrase", self.reason, _reason_ok, _bad_value_char, "RFC 9112 §4")
        if not isinstance(self.headers, Headers):
            self.headers = Headers(self.headers)

    def serialize(self) -> bytes:
        """Head and body as bytes, with a Content-Length unless it is a 101 or
        has one; fields changed since construction are checked again."""
        _check_status(self.status)
        _check_part("reason phrase", self.reason, _reason_ok, _bad_value_char, "RFC 9112 §4")
        headers = self.headers if isinstance(self.headers, Headers) else Headers(self.headers)
        if self.status != 101 and "Content-Length" not in headers:
            headers = Headers(headers)
            headers.add("Content-Length", str(len(self.body)))
        return _head_bytes(f"HTTP/1.1 {self.status:d} {self.reason}", headers) + self.body


def error_response(status: int, text: str, headers: Sequence[tuple[str, str]] = ()) -> Response:
    """A short plain-text error answer that closes the connection.

    ``text`` goes in the body, so it may hold anything; a bad status or header
    raises InvalidHeader here, before anything is written.
    """
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
        # The same rules as for writing, so a parsed head can be written back.
        # A token has no whitespace: none between the name and the colon (RFC 9112 §5.1).
        if not colon or _name_ok(name) is None:
            raise InvalidHandshake(f"invalid header line: {line[:60]!r}")
        value = value.strip(" \t")
        if _value_ok(value) is None:
            raise InvalidHandshake(f"invalid header value for {name}")
        items.append((name, value))
    return lines[0], items


def parse_request(head: bytes) -> Request:
    """Parse a request head; malformed input raises InvalidHandshake (400).

    The request line must pass the checks Request applies when writing (token
    method, target without whitespace or controls, ``HTTP/<digit>.<digit>``).
    """
    request_line, items = _parse_head(head)
    parts = request_line.split(" ")
    if len(parts) == 3:
        try:
            return Request(parts[0], parts[1], Headers._checked(items), parts[2])
        except InvalidHeader:
            pass
    raise InvalidHandshake(f"invalid request line: {request_line[:60]!r}")


def parse_response(head: bytes) -> Response:
    """Parse a response head; malformed input raises InvalidHandshake.

    The status must be 100-599 and the reason phrase free of control
    characters other than HTAB, as Response requires when writing.
    """
    status_line, items = _parse_head(head)
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    # ASCII digits only: str.isdigit() also admits "³", which int() rejects.
    if version.startswith("HTTP/1.") and len(code) == 3 and code.isascii() and code.isdigit():
        try:
            return Response(int(code), Headers._checked(items), b"", reason or " ")
        except InvalidHeader:
            pass
    raise InvalidHandshake(f"invalid status line: {status_line[:60]!r}")


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
        self.server_header = _stored_value("Server", server_header) if server_header else server_header

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

        response_headers = Headers._checked(
            [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept_key(key))]
        )
        try:
            if subprotocol is not None:
                response_headers.add("Sec-WebSocket-Protocol", subprotocol)
            if extension_value:
                response_headers.add("Sec-WebSocket-Extensions", extension_value)
            if self.server_header:
                response_headers.add("Server", self.server_header)
        except (InvalidHeader, TypeError) as exc:
            # A hook (or a changed attribute) gave a value that cannot be
            # written: the server's fault. Reported as a 500 with the header's
            # name, like a subprotocol that was not offered, so every caller
            # answers it and nothing of this 101 goes out.
            raise InvalidHandshake(f"cannot answer the handshake: {exc}", 500) from exc
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


def _check_subprotocol(subprotocol: str) -> None:
    """A subprotocol the client offers must reach the server as itself: a
    non-empty field value (RFC 9110 §5.5) without a comma, which would split it
    into two offers, and without whitespace at either end, which the server
    strips. RFC 6455 §4.1 asks for a token; fastws's server takes any value it
    can parse, and the client can offer back anything the server parsed."""
    try:
        if subprotocol and _value_ok(subprotocol) is not None and "," not in subprotocol:
            if subprotocol == subprotocol.strip():
                return
    except TypeError:
        raise TypeError(f"a subprotocol must be str, not {type(subprotocol).__name__}") from None
    if subprotocol and _value_ok(subprotocol) is not None:
        comma = subprotocol.find(",")
        problem = (
            f"',' at index {comma} of {len(subprotocol)} characters: it would split the offer in two"
            if comma >= 0
            else "leading or trailing whitespace, which the server strips"
        )
    else:
        problem = _problem(subprotocol, _bad_value_char, "leading or trailing whitespace, which the server strips")
    raise InvalidHeader(
        f"invalid subprotocol {_short(subprotocol)} for header 'Sec-WebSocket-Protocol': {problem}",
        "Sec-WebSocket-Protocol",
    )


class ClientHandshake:
    """The client's side of the handshake: build the request, check the answer.

    Every argument that reaches the request (host, path, origin, subprotocols,
    extensions, user agent, extra headers) is checked here: a bad one raises
    InvalidHeader naming the header, before any request exists.
    """

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
        for subprotocol in self.subprotocols:
            _check_subprotocol(subprotocol)
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
            raise InvalidStatus(response.status, response.reason, response.body, response)
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
