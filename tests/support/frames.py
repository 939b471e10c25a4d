"""Frames as a client sends them, built by hand (not by the codec under test)."""

from __future__ import annotations

import struct

KEY = bytes((0x37, 0xFA, 0x21, 0x3D))


def naive_mask(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def client_frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, key: bytes = KEY) -> bytes:
    """A masked frame as a client sends it, built by hand (not by the codec under test)."""
    first = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 65536:
        head = bytes((first, 0x80 | 126)) + struct.pack("!H", n)
    else:
        head = bytes((first, 0x80 | 127)) + struct.pack("!Q", n)
    return head + key + naive_mask(payload, key)
