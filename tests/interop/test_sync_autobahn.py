"""Autobahn|Testsuite through kosoku for the threaded server and client
(``fastws.sync``), on both codec backends: zero failures. kosoku runs as users
run it, in its own process: ``kosoku 127.0.0.1:PORT -p 2`` against the server,
``kosoku -m fuzzingserver`` for the client. Cases 1-10 and 12-13."""

from __future__ import annotations

import re
import subprocess
import threading

import pytest

from fastws.exceptions import WebSocketError
from fastws.extensions.permessage_deflate import SERVER_DEFAULT
from fastws.sync import connect, serve

from .test_autobahn import (
    CLIENT_COMPRESSION,
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
)


def echo(ws):
    for message in ws:
        ws.send(message)


@pytest.mark.timeout(RUN_LIMIT + 60)
@pytest.mark.parametrize("suite", ["core", "compression"])
def test_sync_server_passes_autobahn(suite, tmp_path):
    options = CORE_OPTIONS if suite == "core" else OPTIONS
    with serve(echo, "127.0.0.1", 0, compression=SERVER_DEFAULT, **options) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        fuzzer = subprocess.run(
            [*kosoku_command(), f"127.0.0.1:{server.port}", *SUITES[suite], "-p", "2", "-o", str(tmp_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=RUN_LIMIT,
        )
    thread.join(10)
    assert not thread.is_alive()
    assert (tmp_path / "index.json").exists(), fuzzer.stderr.decode()[-2000:]
    # The core cases strictly, as for the asyncio server: a message that
    # arrives together with a protocol violation is echoed before the close.
    assert failures(tmp_path, MINIMUM_CASES[suite], STRICT if suite == "core" else PASSING) == []


def run_case(url: str) -> None:
    try:
        with connect(url, compression=CLIENT_COMPRESSION, **OPTIONS) as ws:
            for message in ws:
                ws.send(message)
    except (WebSocketError, OSError):
        pass  # cases that break the protocol end with the client failing the connection


@pytest.mark.timeout(RUN_LIMIT + 60)
@pytest.mark.parametrize("suite", sorted(SUITES))
def test_sync_client_passes_autobahn(suite, tmp_path):
    fuzzer = subprocess.Popen(
        [*kosoku_command(), "-m", "fuzzingserver", "127.0.0.1:0", *SUITES[suite], "-o", str(tmp_path)],
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
        for case in range(1, count + 1):
            run_case(f"{base}/runCase?case={case}&agent=fastws")
        with connect(f"{base}/updateReports?agent=fastws"):
            pass
        fuzzer.wait(120)
    finally:
        if fuzzer.returncode is None:
            fuzzer.kill()
            fuzzer.wait()
    assert failures(tmp_path, MINIMUM_CASES[suite]) == []
