"""Autobahn|Testsuite through kosoku for the threaded server and client
(``fastws.sync``), on both codec backends: zero failures. kosoku runs as users
run it, in its own process: ``kosoku 127.0.0.1:PORT -p 2`` against the server,
``kosoku -m fuzzingserver`` for the client (two cases at a time).

Cases 1-10 in full. Of 12-13 (permessage-deflate), every group, cases
x.y.2-9 (96 of 216), as for the asyncio runs other than the compiled ``async
for`` server and client: the others (x.y.1 and the large messages of
x.y.10-18) take kosoku five to ten minutes per run and test the sans-I/O
deflate code that those runs cover in full; the threaded layer's own part
(compressed frames written in the order they were compressed, the context
carried from message to message) is the same at every size.
``FASTWS_AUTOBAHN_FULL=1`` runs all 216."""

from __future__ import annotations

import re
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from fastws.exceptions import WebSocketError
from fastws.extensions.permessage_deflate import SERVER_DEFAULT
from fastws.sync import connect, serve

from .test_autobahn import (
    CLIENT_NO_CONTEXT_TAKEOVER,
    CORE_OPTIONS,
    MINIMUM_CASES,
    OPTIONS,
    PASSING,
    RUN_LIMIT,
    STRICT,
    SUITES,
    backend,  # noqa: F401  (the autouse fixture: both codec backends)
    failures,
    kosoku_command,
    selection,
)


def echo(ws):
    for message in ws:
        ws.send(message)


@pytest.mark.timeout(RUN_LIMIT + 60)
@pytest.mark.parametrize("suite", ["core", "compression"])
def test_sync_server_passes_autobahn(suite, tmp_path):
    cases, minimum = selection(SUITES[suite], MINIMUM_CASES[suite], full=False)
    options = CORE_OPTIONS if suite == "core" else OPTIONS
    with serve(echo, "127.0.0.1", 0, compression=SERVER_DEFAULT, **options) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        fuzzer = subprocess.run(
            [*kosoku_command(), f"127.0.0.1:{server.port}", *cases, "-p", "2", "-o", str(tmp_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=RUN_LIMIT,
        )
    thread.join(10)
    assert not thread.is_alive()
    assert (tmp_path / "index.json").exists(), fuzzer.stderr.decode()[-2000:]
    # The core cases strictly, as for the asyncio server: a message that
    # arrives together with a protocol violation is echoed before the close.
    assert failures(tmp_path, minimum, STRICT if suite == "core" else PASSING) == []


def run_case(url: str) -> None:
    try:
        with connect(url, compression=CLIENT_NO_CONTEXT_TAKEOVER, **OPTIONS) as ws:
            for message in ws:
                ws.send(message)
    except (WebSocketError, OSError):
        pass  # cases that break the protocol end with the client failing the connection


@pytest.mark.timeout(RUN_LIMIT + 60)
@pytest.mark.parametrize("suite", ["core", "compression"])
def test_sync_client_passes_autobahn(suite, tmp_path):
    cases, minimum = selection(SUITES[suite], MINIMUM_CASES[suite], full=False)
    fuzzer = subprocess.Popen(
        [*kosoku_command(), "-m", "fuzzingserver", "127.0.0.1:0", *cases, "-o", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert fuzzer.stderr is not None
        line = fuzzer.stderr.readline()
        match = re.search(rb"ws://127\.0\.0\.1:(\d+)", line)
        assert match, line
        base = f"ws://127.0.0.1:{int(match.group(1))}"
        with connect(f"{base}/getCaseCount") as ws:
            count = int(ws.recv(timeout=60))
        with ThreadPoolExecutor(2) as pool:  # two cases at a time, as the server runs get
            list(pool.map(run_case, [f"{base}/runCase?case={case}&agent=fastws" for case in range(1, count + 1)]))
        with connect(f"{base}/updateReports?agent=fastws"):
            pass
        fuzzer.wait(120)
    finally:
        if fuzzer.returncode is None:
            fuzzer.kill()
            fuzzer.wait()
    assert failures(tmp_path, minimum) == []
