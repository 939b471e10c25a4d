"""The opening handshake as one sequence, sans I/O (RFC 6455 §4): read the HTTP
head, check it, answer, start the ``Connection``.

Every I/O layer — the asyncio server and client, the uvicorn class — runs one
of these per connection instead of its own copy of the sequence. Bytes that
arrive after the head (a peer may send its first frames without waiting for
the answer) are kept and handed back with the ``Connection``, for the layer to
feed through its usual receive path, so none is lost or parsed twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Optional, Union

from .connection import Connection
from .exceptions import InvalidHandshake
from .extensions.permessage_deflate import Deflate, PerMessageDeflate
from .frames import MAX_FRAME_SIZE, MAX_MESSAGE_SIZE
from .handshake import (
    MAX_HEADER_SIZE,
    SERVER_NAME,
    ClientHandshake,
    Headers,
    HeadParser,
    Request,
    Response,
    ServerHandshake,
    error_response,
    parse_request,
    parse_response,
)

if TYPE_CHECKING:
    from .uri import WebSocketURI

__all__ = ["ServerUpgrade", "ClientUpgrade", "ClientRequest", "HeadersLike"]

HeadersLike = Union[Mapping[str, str], Iterable[tuple[str, str]], Headers]
"""Extra request headers: a dict, a list of (name, value) pairs, or ``Headers``."""

ERROR_BODY_SIZE = 4096
"""How much of a refusal's body the client keeps, for the error message."""


class _Upgrade:
    """What both sides share: the head being read, the bytes after it, the Connection."""

    is_client = False

    def __init__(self, max_header_size: int) -> None:
        self._head: Optional[HeadParser] = HeadParser(max_header_size)
        self.early_data = b""  # what the peer sent after its head, not parsed yet
        self.subprotocol: Optional[str] = None
        self.extension: Any = None  # the negotiated extension session (permessage-deflate)

    def _feed_head(self, data: bytes) -> Optional[bytes]:
        """The head once complete; later bytes wait in ``early_data``."""
        if self._head is None:
            self.early_data += data
            return None
        result = self._head.feed(data)  # raises InvalidHandshake (431) for an oversized head
        if result is None:
            return None
        self._head = None
        head, self.early_data = result
        return head

    def open(
        self, *, max_message_size: Optional[int] = MAX_MESSAGE_SIZE, max_frame_size: int = MAX_FRAME_SIZE
    ) -> tuple[Connection, bytes]:
        """Start the WebSocket connection; return it with the bytes that came
        after the head, for the caller to pass to its receive path."""
        connection = Connection(
            is_client=self.is_client,
            max_message_size=max_message_size,
            max_frame_size=max_frame_size,
            deflate=self.extension if isinstance(self.extension, Deflate) else None,
        )
        early, self.early_data = self.early_data, b""
        return connection, early


class ServerUpgrade(_Upgrade):
    """The server's side: ``receive_data()`` until the request is complete,
    then ``accept()`` for the 101 (or InvalidHandshake for the HTTP error), send
    it, then ``open()``. Between the two, an application may still add headers
    to ``response`` or answer with plain HTTP instead."""

    def __init__(self, handshake: ServerHandshake, max_header_size: int = MAX_HEADER_SIZE) -> None:
        super().__init__(max_header_size)
        self.handshake = handshake
        self.request: Optional[Request] = None
        self.response: Optional[Response] = None

    def receive_data(self, data: bytes) -> Optional[Request]:
        """Feed bytes; the Request once its head is complete (once), else None.
        Raises InvalidHandshake, whose status is the answer to send."""
        head = self._feed_head(data)
        if head is None:
            return None
        self.request = parse_request(head)
        return self.request

    def accept(self) -> Response:
        """Check the request (version, key, origin) and negotiate the subprotocol
        and extensions: the 101 answer. Raises InvalidHandshake."""
        assert self.request is not None, "accept() before the request is complete"
        self.response, self.subprotocol, self.extension = self.handshake.accept(self.request)
        return self.response

    # What a server answers other than a 101 it accepted, the same for every
    # I/O layer: our Server header on each answer, no details of our own
    # failures on the wire, a hook's answer checked before it is written.

    def error(self, status: int, text: str, headers: Any = ()) -> Response:
        """A fresh plain-text answer (hooks may edit it in place), with our Server header."""
        response = error_response(status, text, headers)
        if self.handshake.server_header:
            response.headers.add("Server", self.handshake.server_header)
        return response

    def rejection(self, error: InvalidHandshake, log: logging.Logger, peer: str) -> Response:
        """The answer to a refused handshake: its status and reason, or a bare 500 for our own fault."""
        if error.status >= 500:
            log.error("%s handshake failed: %d %s", peer, error.status, error.reason, exc_info=error.__cause__)
            return self.error(500, "Internal Server Error")
        log.info("%s rejected handshake: %d %s", peer, error.status, error.reason)
        return self.error(error.status, error.reason, error.headers)

    def hook_answer(self, name: str, answer: object, log: logging.Logger, peer: str) -> Response:
        """A hook's (``process_request``/``process_response``) answer, checked: 500 if it is
        no writable Response; our Server header added to a copy (the hook's object may be
        shared between connections)."""
        if not isinstance(answer, Response):
            log.error("%s %s returned %s, not a Response or None; answering 500", peer, name, type(answer).__name__)
            return self.error(500, "Internal Server Error")
        server_header = self.handshake.server_header
        if not server_header or answer.status == 101 or "Server" in answer.headers:
            return answer
        try:
            headers = Headers(answer.headers)
            headers.add("Server", server_header)
            return Response(answer.status, headers, answer.body, answer.reason)
        except (ValueError, TypeError):  # InvalidHeader: a field changed after construction
            log.exception("%s %s returned an unwritable response; answering 500", peer, name)
            return self.error(500, "Internal Server Error")

    def final_head(self, response: Response, log: logging.Logger, peer: str) -> tuple[Response, bytes]:
        """The answer to write and its bytes: a 101 that ``accept()`` did not make, or
        an answer that cannot be written (changed after it was checked), becomes 500."""
        if response.status == 101 and self.response is None:
            log.error("%s a hook answered 101 itself (return None to accept); answering 500", peer)
            response = self.error(500, "Internal Server Error")
        try:
            return response, response.serialize()
        except (ValueError, TypeError):  # InvalidHeader
            log.exception("%s unwritable handshake response; answering 500", peer)
            response = self.error(500, "Internal Server Error")
            return response, response.serialize()


class ClientUpgrade(_Upgrade):
    """The client's side: send ``request_bytes()``, ``receive_data()`` until
    the response is complete and checked, then ``open()``."""

    is_client = True

    def __init__(
        self,
        handshake: ClientHandshake,
        compression: Optional[PerMessageDeflate] = None,
        max_header_size: int = MAX_HEADER_SIZE,
    ) -> None:
        super().__init__(max_header_size)
        self.handshake = handshake
        self.compression = compression
        self.response: Optional[Response] = None

    def request_bytes(self) -> bytes:
        return self.handshake.request_bytes()

    def receive_data(self, data: bytes) -> Optional[Response]:
        """Feed bytes; the accepted Response once complete, else None. Raises
        InvalidHandshake (InvalidStatus for an answer other than 101, with up
        to ERROR_BODY_SIZE bytes of its body in ``response.body``)."""
        head = self._feed_head(data)
        if head is None:
            return None
        self.response = response = parse_response(head)
        if response.status != 101:
            response.body = self.early_data[:ERROR_BODY_SIZE]
        self.subprotocol, extensions = self.handshake.process_response(response)
        if extensions and self.compression is not None:
            self.extension = self.compression.accept_response(extensions)
        return response


class ClientRequest:
    """What a client asks for, the same at every URI it tries (redirects,
    reconnections): headers, subprotocols, the extension offer. ``upgrade(target)``
    starts one attempt. Credentials in a target URI become ``Authorization:
    Basic`` unless the caller set Authorization itself. Every header is checked
    here, so a bad one raises InvalidHeader before any connection is made."""

    def __init__(
        self,
        *,
        subprotocols: Optional[list[str]] = None,
        extra_headers: Optional[HeadersLike] = None,
        origin: Optional[str] = None,
        user_agent: Optional[str] = SERVER_NAME,
        compression: Optional[PerMessageDeflate] = None,
        max_header_size: int = MAX_HEADER_SIZE,
    ) -> None:
        self.subprotocols = subprotocols
        if extra_headers is None:
            self.extra_headers: list[tuple[str, str]] = []
        elif isinstance(extra_headers, Mapping):
            self.extra_headers = list(extra_headers.items())
        else:
            self.extra_headers = [(name, value) for name, value in extra_headers]
        self.origin = origin
        self.user_agent = user_agent
        self.compression = compression
        self.max_header_size = max_header_size
        self._has_authorization = any(name.lower() == "authorization" for name, _ in self.extra_headers)
        ClientHandshake(
            "localhost",
            subprotocols=subprotocols,
            extra_headers=self.extra_headers,
            origin=origin,
            user_agent=user_agent,
        )

    def handshake(self, target: WebSocketURI) -> ClientHandshake:
        headers = self.extra_headers
        authorization = target.authorization()
        if authorization is not None and not self._has_authorization:
            headers = [*headers, ("Authorization", authorization)]
        return ClientHandshake(
            target.host_header,
            target.resource,
            subprotocols=self.subprotocols,
            extra_headers=headers,
            origin=self.origin,
            extensions=self.compression.offer() if self.compression is not None else None,
            user_agent=self.user_agent,
        )

    def upgrade(self, target: WebSocketURI) -> ClientUpgrade:
        """A new attempt at ``target``: send ``request_bytes()``, feed the answer."""
        return ClientUpgrade(self.handshake(target), self.compression, self.max_header_size)
