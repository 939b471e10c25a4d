"""The codec backends under test.

The compiled backend is expected unless FASTWS_NO_EXTENSIONS is set; if it is
expected and missing, its tests error instead of being skipped.
"""

from __future__ import annotations

import importlib
import os

BACKENDS = ["python"] if os.environ.get("FASTWS_NO_EXTENSIONS") else ["cython", "python"]
MODULES = {"cython": "fastws._codec", "python": "fastws._codec_py"}


def all_codecs():
    """Both backend modules, for tests that compare them."""
    return [importlib.import_module(MODULES[name]) for name in BACKENDS]
