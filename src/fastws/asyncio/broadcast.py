"""``broadcast()``: one message to many connections, encoded once, through each connection's gate."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from types import ModuleType
from typing import NamedTuple, Optional, Union

from ..connection import PreparedMessage
from .protocol import WebSocket, fan_out

__all__ = ["broadcast", "BroadcastResult"]

logger = logging.getLogger("fastws")


class BroadcastResult(NamedTuple):
    """What ``broadcast()`` did: ``sent`` connections got the message; the others
    were ``closing`` (or not open yet) or ``fragmenting`` (in the middle of
    ``send_fragments()``, which a data frame may not interrupt, RFC 6455 §5.4)."""

    sent: int
    closing: int
    fragmenting: int


def broadcast(
    connections: Iterable[WebSocket],
    message: Union[str, bytes, PreparedMessage],
    *,
    codec: Optional[ModuleType] = None,
) -> BroadcastResult:
    """Send ``message`` to every open connection without waiting.

    The message is encoded once and the same frames go to every server-side
    connection; client-side connections mask their own copy. Each connection's
    ``Connection`` decides whether the message may be sent now: connections
    that are closing, or sending a fragmented message, are skipped and
    counted, never interrupted. Writes leave at the end of the loop iteration,
    one per connection, however many messages are broadcast meanwhile.

    Never waits and never raises for one connection: a connection whose write
    buffer is above ``write_limit`` still gets the message (a peer that reads
    nothing is dropped after ``write_timeout``). Use ``fastws.relay.Relay``
    for bounded per-subscriber backlogs.
    """
    prepared = message if isinstance(message, PreparedMessage) else PreparedMessage(message, codec)
    targets = connections if isinstance(connections, (list, tuple, set, frozenset)) else list(connections)
    refused = fan_out(targets, prepared)
    fragmenting = sum(1 for ws, _ in refused if ws.connection is not None and ws.connection.sending_fragments)
    closing = len(refused) - fragmenting
    sent = len(targets) - len(refused)
    if refused:
        logger.debug("broadcast skipped %d closing and %d fragmenting connections", closing, fragmenting)
    return BroadcastResult(sent, closing, fragmenting)
