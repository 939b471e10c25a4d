"""Shared fixtures: every codec test runs on both backends.

The compiled backend is expected unless FASTWS_NO_EXTENSIONS is set; if it is
expected and missing, its tests error instead of being skipped.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

BACKENDS = ["python"] if os.environ.get("FASTWS_NO_EXTENSIONS") else ["cython", "python"]
MODULES = {"cython": "fastws._codec", "python": "fastws._codec_py"}


@pytest.fixture(params=BACKENDS)
def codec(request):
    """The codec module of one backend (both implement ``fastws/_codec.pyi``)."""
    return importlib.import_module(MODULES[request.param])


def all_codecs():
    """Both backend modules, for tests that compare them."""
    return [importlib.import_module(MODULES[name]) for name in BACKENDS]


@pytest.fixture
def cli_server():
    """`fastws serve` (the tutorial's echo server) in a subprocess; yields its port."""
    process = subprocess.Popen(
        [sys.executable, "-m", "fastws", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()  # "listening on http://127.0.0.1:PORT"
        assert line.startswith("listening on http://127.0.0.1:"), line + process.stderr.read()
        yield int(line.rsplit(":", 1)[1])
    finally:
        process.terminate()
        process.wait(timeout=10)
