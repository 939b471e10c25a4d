"""Pub/sub relay: topics, encode-once fan-out, bounded backlogs, and an optional Redis backplane.

``Relay`` works with any fastws connection (``fastws.broadcast`` is the
simpler tool when no backlog is needed); ``serve_relay``
is the ready server behind ``fastws relay``; ``RedisBackplane`` (needs the
``redis`` package) shares topics between processes.
"""

from .backplane import RedisBackplane, pack, unpack
from .core import Relay, RelayStats, SlowConsumerPolicy
from .server import RelayListener, serve_relay

__all__ = [
    "Relay",
    "RelayListener",
    "RelayStats",
    "RedisBackplane",
    "SlowConsumerPolicy",
    "pack",
    "serve_relay",
    "unpack",
]
