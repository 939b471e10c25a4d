"""The codec backends under test.

The compiled backend is expected unless FASTWS_NO_EXTENSIONS is set; if it is
expected and missing, its tests error instead of being skipped.
"""

from __future__ import annotations

import importlib
import os
import sys

BACKENDS = ["python"] if os.environ.get("FASTWS_NO_EXTENSIONS") else ["cython", "python"]
MODULES = {"cython": "fastws._codec", "python": "fastws._codec_py"}


def all_codecs():
    """Both backend modules, for tests that compare them."""
    return [importlib.import_module(MODULES[name]) for name in BACKENDS]


def use_codec(monkeypatch, codec) -> None:
    """Make the I/O layers' new connections use ``codec``: the module that
    defines ``Connection`` (``fastws._connection_c`` or ``_connection_py``)
    reads its default codec from its global ``default_codec``."""
    from fastws.connection import Connection

    monkeypatch.setattr(sys.modules[Connection.__module__], "default_codec", codec)


CONNECTION_MODULES = {"cython": "fastws._connection_c", "python": "fastws._connection_py"}


def all_connection_classes():
    """``Connection`` as compiled and as written (the same source), for tests that compare them."""
    return [importlib.import_module(CONNECTION_MODULES[name]).Connection for name in BACKENDS]
