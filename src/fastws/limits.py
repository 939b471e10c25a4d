"""Every bound a connection enforces, and the keywords that set them, sans I/O:
shared by every I/O layer (asyncio today; threads, uvicorn) so defaults agree."""

from __future__ import annotations

from typing import Optional, TypedDict

from .frames import MAX_FRAME_SIZE, MAX_MESSAGE_SIZE

__all__ = ["Limits", "LimitOptions", "unknown_keyword", "WEBSOCKETS_NAMES"]


class Limits:
    """Every bound a connection enforces, with safe defaults.

    - ``max_message_size`` 1 MiB: largest incoming message (``None``: no limit).
    - ``max_frame_size`` 1 MiB: outgoing messages are fragmented above this.
    - ``max_queue`` 16: received messages buffered before reading pauses (TCP
      backpressure reaches the peer instead of memory growing).
    - ``write_limit`` 64 KiB: write-buffer high-water mark; ``send()`` waits above it.
    - ``write_timeout`` 60 s: a peer that reads nothing for this long while we
      wait to send is dropped, so it cannot pin our memory.
    - ``open_timeout`` 10 s: the opening handshake must finish in time (slowloris).
    - ``close_timeout`` 10 s: how long to wait for the peer's close frame / TCP close.
    - ``ping_interval`` 20 s / ``ping_timeout`` 20 s: keepalive; ``None`` disables.
    - ``max_header_size`` 16 KiB: the HTTP head of the handshake (431 above it).
    """

    __slots__ = (
        "max_message_size",
        "max_frame_size",
        "max_queue",
        "write_limit",
        "write_timeout",
        "open_timeout",
        "close_timeout",
        "ping_interval",
        "ping_timeout",
        "max_header_size",
    )

    def __init__(
        self,
        *,
        max_message_size: Optional[int] = MAX_MESSAGE_SIZE,
        max_frame_size: int = MAX_FRAME_SIZE,
        max_queue: int = 16,
        write_limit: int = 1 << 16,
        write_timeout: Optional[float] = 60.0,
        open_timeout: Optional[float] = 10.0,
        close_timeout: Optional[float] = 10.0,
        ping_interval: Optional[float] = 20.0,
        ping_timeout: Optional[float] = 20.0,
        max_header_size: int = 16384,
    ) -> None:
        self.max_message_size = max_message_size
        self.max_frame_size = max_frame_size
        self.max_queue = max_queue
        self.write_limit = write_limit
        self.write_timeout = write_timeout
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.max_header_size = max_header_size

    @classmethod
    def from_options(cls, options: LimitOptions, *, caller: str) -> Limits:
        """The limits named in ``options``; any other keyword is a ``TypeError``
        naming it (and fastws's name for it, if it is a websockets name)."""
        unknown = [name for name in options if name not in cls.__slots__]
        if unknown:
            raise unknown_keyword(caller, unknown[0])
        return cls(**options)


class LimitOptions(TypedDict, total=False):
    """The ``Limits`` keywords that ``serve()`` and ``connect()`` accept (see ``Limits``)."""

    max_message_size: Optional[int]
    max_frame_size: int
    max_queue: int
    write_limit: int
    write_timeout: Optional[float]
    open_timeout: Optional[float]
    close_timeout: Optional[float]
    ping_interval: Optional[float]
    ping_timeout: Optional[float]
    max_header_size: int


WEBSOCKETS_NAMES = {
    "max_size": "max_message_size",
    "additional_headers": "extra_headers",
    "process_exception": "backoff= and fastws.policy.retryable (see Reconnection)",
    "reconnect_delays": "backoff= (a fastws.policy.Backoff)",
    "create_connection": "a Listener or a WebSocket subclass",
    "create_protocol": "a Listener or a WebSocket subclass",
    "klass": "a Listener or a WebSocket subclass",
    "read_limit": "max_queue (messages, not bytes)",
    "max_line_length": "max_header_size",
    "max_num_headers": "max_header_size",
}
"""websockets' keywords that fastws spells differently (the migration guide lists them all)."""


def unknown_keyword(caller: str, name: str) -> TypeError:
    """The error for a keyword ``caller`` does not take: named, with fastws's equivalent if we know it."""
    hint = WEBSOCKETS_NAMES.get(name)
    message = f"{caller}() got an unexpected keyword argument {name!r}"
    if hint is not None:
        message += f"; fastws calls it {hint}"
    return TypeError(message)
