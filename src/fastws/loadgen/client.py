"""The load itself: the per-connection listener whose callbacks are the hot
path, and ``Bench``, which opens the connections, applies the load (roundtrip,
pipelined or rate) and gathers a ``BenchResult``.

The source is ``fastws/loadgen/_client_py.py``. Where the compiled codec is in
use, the names come from ``fastws.loadgen._client_c``: the same source compiled
by Cython, its classes extension types (``_client_c.pxd``), as for
``fastws.connection``. ``FASTWS_CODEC=python`` selects the source itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..codec import backend_module

__all__ = ["MODES", "Bench", "bench"]

if TYPE_CHECKING:  # one source: type-check it, whichever module runs
    from ._client_py import MODES, Bench, bench
else:
    _implementation = backend_module("loadgen._client")
    MODES = _implementation.MODES
    Bench = _implementation.Bench
    bench = _implementation.bench
