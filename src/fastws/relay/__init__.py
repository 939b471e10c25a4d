"""Pub/sub relay: topics, encode-once fan-out, bounded backlogs, and an optional Redis backplane.

``Relay`` works with any fastws connection (``fastws.broadcast`` is the
simpler tool when no backlog is needed); ``serve_relay``
is the ready server behind ``fastws relay``; ``RedisBackplane`` (needs the
``redis`` package) shares topics between processes; ``TokenAuth`` and
``JWTAuth`` (PyJWT) are ready ``authorize`` policies.
"""

from .auth import TOKEN_EXPIRED, Denied, JWTAuth, TokenAuth
from .backplane import RedisBackplane, pack, unpack
from .core import GAP_CLOSE_CODE, Relay, RelayStats, SlowConsumerPolicy
from .server import RelayListener, serve_relay

__all__ = [
    "Denied",
    "GAP_CLOSE_CODE",
    "JWTAuth",
    "Relay",
    "RelayListener",
    "RelayStats",
    "RedisBackplane",
    "SlowConsumerPolicy",
    "TOKEN_EXPIRED",
    "TokenAuth",
    "pack",
    "serve_relay",
    "unpack",
]
