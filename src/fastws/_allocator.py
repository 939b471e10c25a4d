"""glibc allocator settings for fastws's own programs (the ``fastws`` command).

glibc serves an allocation of ``M_MMAP_THRESHOLD`` or more (128 KiB at
start) with an mmap of its own, returned to the kernel when freed. It also
gives back the free memory at the top of its heap once more than
``M_TRIM_THRESHOLD`` is free there. Both thresholds adapt (a freed mmapped block
raises them), but not far enough for a peer that moves 100 KiB-1 MiB
messages: the event loop's 256 KiB reads, the payloads and the frames being
sent are allocated and freed in turns. The heap then shrinks and grows again,
and every new page costs a fault. perf showed page faults at about a fifth of
``fastws bench``'s CPU at 100 KiB. Keeping that memory (mmap above 4 MiB,
give back above 64 MiB free) took its pipelined 100 KiB echoes from ~10,000
to ~16,000 per second.

A library must not choose this for the program it runs in, so importing
fastws never does. The ``fastws`` command (serve, relay, client, bench) is a
program and does, unless ``FASTWS_MALLOC=default`` is set or ``GLIBC_TUNABLES``
already sets a ``glibc.malloc`` tunable.

``heap_usage()`` reads the same allocator's counters, for the tests and the
memory benchmark.
"""

from __future__ import annotations

import ctypes
import os
import platform
from typing import NamedTuple, Optional

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 4 << 20
"""Allocations from this size up get an mmap of their own (glibc's cap is 32 MiB)."""

TRIM_THRESHOLD = 64 << 20
"""Free memory at the top of the heap beyond this goes back to the kernel."""

GLIBC_TUNABLES = f"glibc.malloc.mmap_threshold={MMAP_THRESHOLD}:glibc.malloc.trim_threshold={TRIM_THRESHOLD}"
"""The same settings as glibc's environment variable, for a program that
fastws does not start (docs/cli.md) and the benchmarks' processes."""


def retain_freed_memory() -> bool:
    """Apply the thresholds above to this process's glibc allocator; True if
    they were applied (False elsewhere than glibc, or when opted out)."""
    if os.environ.get("FASTWS_MALLOC") == "default" or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


class HeapUsage(NamedTuple):
    """glibc's allocator counters (mallinfo2), in bytes."""

    in_use: int
    """Handed out and not had back: heap blocks and mmapped ones (Python's
    small-object arenas count as whole blocks)."""
    mmapped: int
    """The part of ``in_use`` served by mmaps of their own."""
    free: int
    """Freed and kept in the heap for the next allocations."""


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
    ]


def heap_usage() -> Optional[HeapUsage]:
    """This process's C heap as glibc counts it; None elsewhere than glibc.
    Unlike RSS, ``in_use`` falls when memory in the middle of the heap is freed."""
    if platform.libc_ver()[0] != "glibc":
        return None
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2  # glibc >= 2.33
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return HeapUsage(in_use=info.uordblks + info.hblkhd, mmapped=info.hblkhd, free=info.fordblks)
