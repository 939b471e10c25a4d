"""Frames as a client or a server sends them, built by hand (not by the codec under test)."""

from __future__ import annotations

import struct

KEY = bytes((0x37, 0xFA, 0x21, 0x3D))


def naive_mask(data: bytes, key: bytes) -> bytes:
    """XOR with the key repeated, as one big integer (quick enough for megabytes)."""
    n = len(data)
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(keys, "big")).to_bytes(n, "big")


def _head(first: int, n: int, mask_bit: int) -> bytes:
    if n < 126:
        return bytes((first, mask_bit | n))
    if n < 65536:
        return bytes((first, mask_bit | 126)) + struct.pack("!H", n)
    return bytes((first, mask_bit | 127)) + struct.pack("!Q", n)


def client_frame(opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, key: bytes = KEY) -> bytes:
    """A masked frame as a client sends it."""
    return _head((0x80 if fin else 0) | rsv | opcode, len(payload), 0x80) + key + naive_mask(payload, key)


def server_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """An unmasked frame as a server sends it."""
    return _head((0x80 if fin else 0) | opcode, len(payload), 0) + payload
