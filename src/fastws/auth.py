"""HTTP Basic authentication of the opening handshake (RFC 7617), sans I/O.

``basic_auth()`` makes a ``process_request`` hook for ``serve()``::

    serve(handler, process_request=basic_auth("my app", {"alice": "s3cret"}))

A request without valid credentials gets ``401 Unauthorized`` with
``WWW-Authenticate: Basic realm="my app", charset="UTF-8"``; an accepted one
sets ``connection.username``. To combine it with a hook of your own, call it
from yours::

    auth = basic_auth("my app", {"alice": "s3cret"})

    def process_request(connection, request):
        denied = auth(connection, request)  # a Response (401) or None
        if denied is not None:
            return denied
        ...  # your checks; connection.username is set

With an async ``check_credentials`` the hook returns an awaitable instead:
make yours async and ``await`` it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import inspect
import os
import re
import unicodedata
from collections.abc import Awaitable, Iterable, Mapping
from typing import Callable, Optional, Protocol, Union

from .handshake import Headers, Request, Response, error_response

__all__ = ["basic_auth", "parse_basic_credentials", "basic_challenge"]

CheckCredentials = Callable[[str, str], Union[bool, Awaitable[bool]]]
Credentials = Union[Mapping[str, str], Iterable[tuple[str, str]], tuple[str, str]]


class Authenticated(Protocol):
    """What the hook needs of a connection: a ``username`` it can set
    (``ServerConnection`` has one, None until authenticated)."""

    username: Optional[str]


BasicAuthHook = Callable[[Authenticated, Request], Union[Optional[Response], Awaitable[Optional[Response]]]]

_realm_ok = re.compile(r"[\x20-\x7e]*").fullmatch
_token68_ok = re.compile(r"[A-Za-z0-9+/]+=*").fullmatch  # base64's alphabet within token68 (RFC 9110 §11.2)
_control = re.compile(r"[\x00-\x1f\x7f]").search


def basic_challenge(realm: str) -> str:
    """The ``WWW-Authenticate`` value: ``Basic realm="...", charset="UTF-8"`` (RFC 7617 §2, §2.1).

    The realm is a quoted-string (RFC 9110 §5.6.4): printable ASCII, with
    ``"`` and ``\\`` escaped; anything else raises ValueError."""
    if not isinstance(realm, str) or _realm_ok(realm) is None:
        raise ValueError(f"a realm must be printable ASCII, not {realm!r}")
    quoted = realm.replace("\\", "\\\\").replace('"', '\\"')
    return f'Basic realm="{quoted}", charset="UTF-8"'


def parse_basic_credentials(value: str) -> Optional[tuple[str, str]]:
    """``(username, password)`` from an ``Authorization`` value, or None if it
    is not well-formed Basic credentials.

    The scheme is case-insensitive (RFC 9110 §11.1); the token is strict
    base64 of ``user-id ":" password`` in UTF-8, as the challenge's
    ``charset="UTF-8"`` asks (RFC 7617 §2.1); the user-id ends at the first
    colon; neither part may hold a control character (RFC 7617 §2). Both are
    returned in Unicode Normalization Form C (RFC 7617 §2.1)."""
    scheme, _, token = value.partition(" ")
    token = token.lstrip(" ")
    if scheme.lower() != "basic" or _token68_ok(token) is None:
        return None
    try:
        text = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = text.partition(":")
    if not colon or _control(text) is not None:
        return None
    return unicodedata.normalize("NFC", username), unicodedata.normalize("NFC", password)


def _credentials_check(credentials: Credentials) -> Callable[[str, str], bool]:
    """A constant-time check against fixed credentials."""
    if isinstance(credentials, tuple) and len(credentials) == 2 and all(isinstance(c, str) for c in credentials):
        pairs: list = [credentials]  # one (username, password) pair, as websockets takes it
    elif isinstance(credentials, Mapping):
        pairs = list(credentials.items())
    else:
        pairs = list(credentials)
    table: dict[str, bytes] = {}
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(part, str) for part in pair)):
            raise TypeError(f"credentials must be (username, password) pairs of str, not {pair!r}")
        username, password = (unicodedata.normalize("NFC", part) for part in pair)
        if ":" in username or _control(username + password) is not None:
            raise ValueError(f"username {username!r}: no colon or control character can be sent (RFC 7617 §2)")
        if username in table:
            raise ValueError(f"username {username!r} is given twice")
        table[username] = hashlib.sha256(password.encode()).digest()
    unknown = hashlib.sha256(os.urandom(32)).digest()

    def check(username: str, password: str) -> bool:
        # Digests are compared, so both sides always have 32 bytes and
        # compare_digest's time says nothing about the password's length or
        # how much of it matched; an unknown user costs the same comparison
        # (against a random digest), so the time does not tell which users
        # exist. What remains is the dict lookup: a hit adds one comparison
        # of the username with itself, nanoseconds, not measurable over a
        # network through the handshake's own jitter.
        expected = table.get(username)
        given = hashlib.sha256(password.encode()).digest()
        return hmac.compare_digest(unknown if expected is None else expected, given) and expected is not None

    return check


def basic_auth(
    realm: str,
    credentials: Optional[Credentials] = None,
    check_credentials: Optional[CheckCredentials] = None,
) -> BasicAuthHook:
    """A ``process_request`` hook that admits only requests with valid Basic credentials.

    Pass exactly one of ``credentials`` (a mapping of username to password,
    ``(username, password)`` pairs, or one pair: compared in constant time)
    or ``check_credentials(username, password)`` returning a bool (or an
    awaitable of one, and the hook is then async). A missing, malformed or
    wrong ``Authorization`` gets 401 with the challenge; an accepted request
    sets ``connection.username``. Usernames and passwords are UTF-8 and
    compared in Unicode NFC."""
    if (credentials is None) == (check_credentials is None):
        raise TypeError("basic_auth() takes either credentials or check_credentials, not both")
    challenge = [("WWW-Authenticate", basic_challenge(realm))]
    Headers(challenge)  # checked once here
    check: CheckCredentials = (
        _credentials_check(credentials) if credentials is not None else check_credentials  # type: ignore[assignment]
    )

    def unauthorized(text: str) -> Response:
        return error_response(401, text, challenge)  # fresh each time: process_response may edit it

    def settle(connection: Authenticated, username: str, valid: object) -> Optional[Response]:
        if not valid:
            return unauthorized("Invalid credentials")
        connection.username = username
        return None

    async def settle_later(connection: Authenticated, username: str, pending: Awaitable[bool]) -> Optional[Response]:
        return settle(connection, username, await pending)

    def process_request(connection: Authenticated, request: Request) -> Union[Optional[Response], Awaitable]:
        values = request.headers.get_all("Authorization")
        if not values:
            return unauthorized("Missing credentials")
        parsed = parse_basic_credentials(values[0]) if len(values) == 1 else None
        if parsed is None:
            return unauthorized("Malformed credentials")
        username, password = parsed
        valid = check(username, password)
        if inspect.isawaitable(valid):
            return settle_later(connection, username, valid)
        return settle(connection, username, valid)

    return process_request
