"""Pub/sub relay: topics, encode-once fan-out, bounded backlogs, and an optional Redis backplane.

``Relay`` and ``broadcast`` work with any fastws connection; ``serve_relay``
is the ready server behind ``fastws relay``; ``RedisBackplane`` (needs the
``redis`` package) shares topics between processes.
"""

from .backplane import RedisBackplane, pack, unpack
from .core import Relay, RelayStats, SlowConsumerPolicy, broadcast, encode
from .server import RelayListener, serve_relay

__all__ = [
    "Relay",
    "RelayListener",
    "RelayStats",
    "RedisBackplane",
    "SlowConsumerPolicy",
    "broadcast",
    "encode",
    "pack",
    "serve_relay",
    "unpack",
]
