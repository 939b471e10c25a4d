"""Shared fixtures (every codec test runs on both backends) and the test markers.

The compiled backend is expected unless FASTWS_NO_EXTENSIONS is set; if it is
expected and missing, its tests error instead of being skipped.

Markers (registered in pyproject.toml): everything under tests/interop/ is
marked ``interop`` here; long-running tests carry ``slow`` themselves. The
inner loop is ``python -m pytest -m "not interop and not slow"``; plain
``python -m pytest`` runs everything. ``--no-skips`` turns every skip into a
failure (CI's runs on other Python versions: nothing is skipped silently).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .support.codecs import BACKENDS, MODULES

INTEROP_DIR = Path(__file__).parent / "interop"


def pytest_addoption(parser):
    parser.addoption(
        "--no-skips",
        action="store_true",
        help="a test that skips (say, for a missing optional dependency) fails: deselect it with a reason instead",
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        if INTEROP_DIR in Path(item.path).parents:
            item.add_marker(pytest.mark.interop)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and item.config.getoption("--no-skips"):
        report.outcome = "failed"
        report.longrepr = f"skipped under --no-skips: {report.longrepr}"


PROXY_NAMES = {"http_proxy", "https_proxy", "ws_proxy", "wss_proxy", "socks_proxy", "all_proxy", "no_proxy"}
PROXY_VARIABLES = [name for name in os.environ if name.lower() in PROXY_NAMES]


@pytest.fixture(autouse=True)
def no_proxy_environment(monkeypatch):
    """``fastws.connect`` honours *_PROXY variables by default; a test's peers are
    on 127.0.0.1, so the machine's proxy settings must not reach them. The proxy
    tests set the variables they test."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name)


@pytest.fixture(params=BACKENDS)
def codec(request):
    """The codec module of one backend (both implement ``fastws/_codec.pyi``)."""
    return importlib.import_module(MODULES[request.param])


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
