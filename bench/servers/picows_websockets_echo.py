"""picows.websockets echo server: websockets' asyncio API reimplemented on
picows (``async for message in ws``), the same code as websockets_echo.py."""

from __future__ import annotations

import _common
from picows.websockets import ConnectionClosed, serve
from websockets_echo import starter

start = starter(serve, ConnectionClosed)

if __name__ == "__main__":
    _common.run("picows.websockets", start)
