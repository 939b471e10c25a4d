"""Who may subscribe to and publish on which topic: the relay's ``authorize`` hook and two ready policies.

The hook is ``authorize(request, topic, action)``, sync or async (it may
return an awaitable), called once per topic and action per connection, never
per message:

- ``action == "connect"`` (``topic`` None) at the handshake of every connection;
- ``"subscribe"`` at the handshake of ``/<topic>``, or at a control ``subscribe``;
- ``"publish"`` at the first message a connection publishes on a topic.

It returns a true value to allow, a false one to deny (403 at the handshake,
close 1008 later), or raises ``Denied`` to choose the HTTP status and the
close code (``Denied.unauthorized()``: 401; ``Denied.expired()``: 401 at the
handshake, 4001 later). ``request`` is the HTTP request of the handshake
(``fastws.handshake.Request``: ``path``, ``headers``).

A policy with an ``expires_at(request)`` method (``JWTAuth``) also has its
connections closed with 4001 (``TOKEN_EXPIRED``) when their credentials
expire: 4001 and not 1008, so that a client can tell "fetch a new token and
reconnect" from "you may not do this" (4000-4999 are for applications, RFC
6455 §7.4.2).

``TokenAuth("s3cret")``: one shared secret (or several), from ``Authorization:
Bearer <token>`` or ``?token=<token>`` (browsers cannot set headers on a
WebSocket); any valid token may do anything. ``JWTAuth(secret)``: an
HMAC-signed JWT (PyJWT, ``pip install fastws[jwt]``) whose claims list the
topics::

    {"sub": "alice", "exp": 1767225600,
     "subscribe": ["prices", "news.*"], "publish": ["chat.alice"]}

A name ending in ``*`` matches every topic that starts with what precedes it
(``"*"``: every topic). Both compare in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, Callable, Optional, Union
from urllib.parse import parse_qs

from ..frames import CloseCode
from ..handshake import Request

__all__ = ["Authorize", "Denied", "JWTAuth", "TokenAuth", "TOKEN_EXPIRED", "request_token"]

TOKEN_EXPIRED = 4001
"""The close code when a connection's token expires (or is found expired later)."""

Authorize = Callable[[Request, Optional[str], str], Union[Any, Awaitable[Any]]]
"""``authorize(request, topic, action)``: truthy (or an awaitable of it) allows; ``Denied`` refuses."""
ACTIONS = ("connect", "subscribe", "publish")


class Denied(Exception):
    """Raised by an ``authorize`` hook: refuse with ``status`` at the handshake,
    close with ``close_code`` once the connection is open; ``reason`` says why
    (sent to the client: keep secrets out of it)."""

    def __init__(self, reason: str = "forbidden", *, status: int = 403, close_code: int = CloseCode.POLICY_VIOLATION):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.close_code = close_code

    @classmethod
    def unauthorized(cls, reason: str) -> Denied:
        """Missing or invalid credentials: 401, or 1008 once open."""
        return cls(reason, status=401)

    @classmethod
    def expired(cls, reason: str = "token expired") -> Denied:
        """Credentials that were valid: 401, or ``TOKEN_EXPIRED`` (4001) once open."""
        return cls(reason, status=401, close_code=TOKEN_EXPIRED)


def request_token(request: Request) -> Optional[str]:
    """The token of a request: ``Authorization: Bearer <token>``, else ``?token=``.
    None if there is none; ``Denied`` (401) if either is given twice or malformed."""
    values = request.headers.get_all("Authorization")
    if values:
        if len(values) != 1:
            raise Denied.unauthorized("more than one Authorization header")
        scheme, _, token = values[0].partition(" ")
        token = token.strip(" ")
        if scheme.lower() != "bearer" or not token:
            raise Denied.unauthorized("expected Authorization: Bearer <token>")
        return token
    query = request.path.partition("?")[2]
    if not query:
        return None
    tokens = parse_qs(query, keep_blank_values=True).get("token")
    if not tokens:
        return None
    if len(tokens) != 1 or not tokens[0]:
        raise Denied.unauthorized("expected one non-empty token parameter")
    return tokens[0]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class TokenAuth:
    """Shared secrets: a request with one of ``tokens`` may subscribe and publish
    anywhere; without one it gets 401. Compared as SHA-256 digests with
    ``hmac.compare_digest``, every token each time, so the time taken says
    neither which token matched nor how much of one did."""

    def __init__(self, tokens: Union[str, Iterable[str]]) -> None:
        tokens = [tokens] if isinstance(tokens, str) else list(tokens)
        if not tokens or not all(isinstance(t, str) and t for t in tokens):
            raise ValueError("TokenAuth needs at least one non-empty token")
        self._digests = [_digest(token) for token in tokens]

    def __call__(self, request: Request, topic: Optional[str], action: str) -> bool:
        token = request_token(request)
        if token is None:
            raise Denied.unauthorized("missing token")
        given = _digest(token)
        valid = False
        for digest in self._digests:
            valid |= hmac.compare_digest(digest, given)
        if not valid:
            raise Denied.unauthorized("invalid token")
        return True


def topic_allowed(patterns: Sequence[str], topic: str) -> bool:
    """``topic`` is one of ``patterns``, or starts with what precedes the ``*`` ending one."""
    for pattern in patterns:
        if pattern.endswith("*"):
            if topic.startswith(pattern[:-1]):
                return True
        elif pattern == topic:
            return True
    return False


class JWTAuth:
    """HMAC-signed JSON Web Tokens (PyJWT) whose claims list the topics.

    ``secret``: the HMAC key; ``algorithms``: those accepted (HS256 by
    default; never "none"). ``subscribe_claim``/``publish_claim`` name the
    claims listing the topics (a list of names or ``*`` patterns). ``exp`` is
    required unless ``require_exp=False``; ``leeway`` seconds of clock skew
    are tolerated; ``audience``/``issuer``, if given, must match. A missing,
    malformed, tampered or expired token gets 401 at the handshake; a topic
    outside the claims 403, or close 1008 once open; the connection is closed
    with 4001 when the token expires.
    """

    def __init__(
        self,
        secret: Union[str, bytes],
        *,
        algorithms: Sequence[str] = ("HS256",),
        subscribe_claim: str = "subscribe",
        publish_claim: str = "publish",
        require_exp: bool = True,
        leeway: float = 0.0,
        audience: Optional[str] = None,
        issuer: Optional[str] = None,
    ) -> None:
        import jwt  # PyJWT: fail now, not at the first connection

        if not secret:
            raise ValueError("JWTAuth needs a secret")
        if not algorithms or not all(a.upper().startswith("HS") for a in algorithms):
            raise ValueError("JWTAuth verifies HMAC signatures only (HS256, HS384, HS512)")
        self._jwt = jwt
        self.secret = secret
        self.algorithms = list(algorithms)
        self.subscribe_claim = subscribe_claim
        self.publish_claim = publish_claim
        self.require_exp = require_exp
        self.leeway = leeway
        self.audience = audience
        self.issuer = issuer

    def claims(self, request: Request) -> dict[str, Any]:
        """The verified claims of the request's token; ``Denied`` if there are none."""
        token = request_token(request)
        if token is None:
            raise Denied.unauthorized("missing token")
        jwt = self._jwt
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=self.algorithms,
                options={"require": ["exp"] if self.require_exp else []},
                leeway=self.leeway,
                audience=self.audience,
                issuer=self.issuer,
            )
        except jwt.ExpiredSignatureError:
            raise Denied.expired() from None
        except jwt.InvalidTokenError as exc:
            raise Denied.unauthorized(f"invalid token: {exc}"[:100]) from None
        if not isinstance(claims, dict):
            raise Denied.unauthorized("invalid token: claims are not an object")
        return claims

    def __call__(self, request: Request, topic: Optional[str], action: str) -> bool:
        claims = self.claims(request)
        if action == "connect" or topic is None:
            return True
        patterns = claims.get(self.subscribe_claim if action == "subscribe" else self.publish_claim, [])
        if isinstance(patterns, str):
            patterns = [patterns]
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise Denied.unauthorized(f"invalid token: {action} claim is not a list of topics")
        if not topic_allowed(patterns, topic):
            raise Denied(f"not allowed to {action} on {topic!r}"[:100])
        return True

    def expires_at(self, request: Request) -> Optional[float]:
        """When the request's token expires (a ``time.time()`` value), if it does."""
        try:
            exp = self.claims(request).get("exp")
        except Denied:
            return time.time()
        return float(exp) + self.leeway if isinstance(exp, (int, float)) else None
