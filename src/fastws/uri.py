"""WebSocket URIs, sans I/O: parse ``ws://``/``wss://`` (RFC 6455 §3) and follow
redirects safely. Shared by every client (asyncio today, threads tomorrow)."""

from __future__ import annotations

import base64
import urllib.parse
from dataclasses import dataclass
from typing import Optional

from .exceptions import InvalidRedirect, InvalidStatus, InvalidURI

__all__ = ["WebSocketURI", "parse_uri", "redirect_uri", "Redirects", "REDIRECT_STATUSES", "MAX_REDIRECTS"]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
"""Answers to the upgrade that point elsewhere (RFC 9110 §15.4); a client follows them."""

MAX_REDIRECTS = 10
"""How many redirects one opening follows before it calls it a loop."""


@dataclass(frozen=True)
class WebSocketURI:
    """A parsed ``ws://`` or ``wss://`` URI: where to connect and what to ask for."""

    uri: str
    secure: bool
    host: str
    port: int
    resource: str  # path and query: the request target
    username: Optional[str] = None  # from ``ws://user:pass@host/``, percent-decoded
    password: Optional[str] = None

    @property
    def host_header(self) -> str:
        """The ``Host`` header: the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == (443 if self.secure else 80) else f"{host}:{self.port}"

    @property
    def origin(self) -> tuple[bool, str, int]:
        """Scheme, host and port: credentials are only ever sent back to the same one."""
        return self.secure, self.host.lower(), self.port

    def authorization(self) -> Optional[str]:
        """``Authorization: Basic`` for the URI's credentials (RFC 7617, UTF-8), or None."""
        if self.username is None:
            return None
        credentials = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(credentials).decode("ascii")


def parse_uri(uri: str) -> WebSocketURI:
    """Parse ``uri``; anything that is not a usable ws:// or wss:// URI raises InvalidURI."""
    try:
        parts = urllib.parse.urlsplit(uri)
        port = parts.port
    except ValueError as exc:  # a port that is not a number or out of range, a bad IPv6 literal
        raise InvalidURI(f"{uri!r} is not a valid URI: {exc}") from None
    if parts.scheme not in ("ws", "wss"):
        raise InvalidURI(f"{uri!r} is not a ws:// or wss:// URI")
    if not parts.hostname:
        raise InvalidURI(f"{uri!r} has no host")
    if parts.fragment or "#" in uri:
        raise InvalidURI(f"{uri!r} has a fragment, which WebSocket URIs must not have (RFC 6455 §3)")
    secure = parts.scheme == "wss"
    username = password = None
    if parts.username is not None:
        username = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password) if parts.password is not None else None
        if ":" in username:
            raise InvalidURI(f"{uri!r}: a user name with ':' cannot be sent with Basic auth (RFC 7617 §2)")
    return WebSocketURI(
        uri=uri,
        secure=secure,
        host=parts.hostname,
        port=port or (443 if secure else 80),
        resource=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        username=username,
        password=password,
    )


def redirect_uri(current: WebSocketURI, status: int, location: Optional[str]) -> WebSocketURI:
    """Where a 3xx answer to ``current`` sends the client; InvalidRedirect if it must not go.

    A relative ``Location`` is resolved against the current URI (RFC 9110
    §10.2.2). Refused: no ``Location``, a scheme other than ws/wss, and
    ``wss://`` to ``ws://`` (a downgrade would expose what TLS protected).
    Credentials follow only to the same scheme, host and port.
    """
    if not location:
        raise InvalidRedirect(f"HTTP {status} redirect without a Location header", status)
    target = urllib.parse.urljoin(current.uri, location.strip())
    try:
        new = parse_uri(target)
    except InvalidURI as exc:
        raise InvalidRedirect(
            f"HTTP {status} redirect to {target!r}, which is not a WebSocket URI: {exc}", status
        ) from None
    if current.secure and not new.secure:
        raise InvalidRedirect(f"HTTP {status} redirect from wss:// to {target!r} refused: it would drop TLS", status)
    if new.username is None and current.username is not None and new.origin == current.origin:
        new = WebSocketURI(new.uri, new.secure, new.host, new.port, new.resource, current.username, current.password)
    return new


class Redirects:
    """Where one opening goes, sans I/O: the URI to try, then the next after each 3xx.

    ``follow(error)`` takes the ``InvalidStatus`` of an attempt: a redirect
    moves ``target`` on (and returns it); anything else, or a redirect when
    ``max_redirects`` is 0, is not ours and is raised again; one too many
    raises InvalidRedirect. ``pinned`` (a socket or Unix path given by the
    user: there is nowhere else to go) refuses every redirect.
    """

    def __init__(self, start: WebSocketURI, max_redirects: int = MAX_REDIRECTS, *, pinned: bool = False) -> None:
        self.target = start
        self.max_redirects = max_redirects
        self.pinned = pinned
        self.count = 0

    def follow(self, error: InvalidStatus) -> WebSocketURI:
        if error.status not in REDIRECT_STATUSES or self.max_redirects == 0:
            raise error
        location = error.response.headers.get("Location") if error.response is not None else None
        target = redirect_uri(self.target, error.status, location)
        if self.pinned:
            raise InvalidRedirect(f"HTTP {error.status} redirect on a socket given to connect()", error.status)
        self.count += 1
        if self.count > self.max_redirects:
            raise InvalidRedirect(f"more than {self.max_redirects} redirects, the last to {target.uri}", error.status)
        self.target = target
        return target
