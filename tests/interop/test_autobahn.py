"""Autobahn|Testsuite through kosoku, for the fastws server and client, on both
codec backends: zero failures allowed. The server's core cases (1-10) must be
strict too, for the ``async for`` API and the Listener API: a message that
arrives together with a protocol violation is still echoed before the close
frame (0 NON-STRICT). Elsewhere NON-STRICT and INFORMATIONAL pass, as the suite
itself counts them.

kosoku runs in its own process (its CLI), so the fuzzer and fastws use both
cores; every run is bounded in time. Cases 1.*-10.* are the core protocol,
12.* and 13.* permessage-deflate.

The core cases run in full everywhere. The 216 compression cases run in full
for the ``async for`` server and the client on the compiled codec; the Listener
server and the Python codec run every group's cases x.y.2-9 (96 of 216): the
others (x.y.1 and the 1000 messages of 128 KiB of x.y.10-18) take kosoku some
ten minutes a run and measure zlib's throughput, which neither the API nor the
codec changes; what does depend on them (RSV1 frames parsed and reassembled,
the context carried from message to message, the reply written) is the same at
every size. ``FASTWS_AUTOBAHN_FULL=1`` runs all 216 everywhere.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from fastws import Listener, connect, serve
from fastws.exceptions import WebSocketError
from fastws.extensions.permessage_deflate import CLIENT_DEFAULT, SERVER_DEFAULT, PerMessageDeflate

from ..support.asyncio import async_test
from ..support.codecs import MODULES, use_codec

SUITES = {
    "core": ["-i", "*", "-x", "12.*", "-x", "13.*"],
    "compression": ["-i", "12.*", "-i", "13.*"],
}
MINIMUM_CASES = {"core": 300, "compression": 216}
# kosoku's patterns match prefixes: "12.*.1*" is x.y.1 and x.y.10-18.
SAMPLE_EXCLUDES = ["-x", "12.*.1*", "-x", "13.*.1*"]
FULL = bool(os.environ.get("FASTWS_AUTOBAHN_FULL"))
PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
STRICT = {"OK", "INFORMATIONAL"}
# Autobahn sends 16 MiB messages and thousands of them: no size or queue limits,
# no keepalive pings in the fuzzer's way. Compression with the defaults of each
# side (kosoku mishandles uncompressed text in a compressed session, so the
# default threshold of 0, compress everything, matters here).
OPTIONS = dict(max_message_size=None, ping_interval=None, max_queue=1 << 16)
# The strict core run keeps the server's default limits, but for the message
# size: the 9.* cases send messages of up to 16 MiB.
CORE_OPTIONS = dict(max_message_size=None)
# The client runs with connect()'s default offer, except for the cases that
# accept only an offer without context takeover (13.2.*, 13.5.*, 13.6.*): the
# fuzzer declines the default offer there (UNIMPLEMENTED), and a run of their
# own makes that offer.
NO_CONTEXT_TAKEOVER_CASES = ("13.2.", "13.5.", "13.6.")
CLIENT_NO_CONTEXT_TAKEOVER = PerMessageDeflate(
    client_no_context_takeover=True, server_max_window_bits=None, client_max_window_bits=None
)
CLIENT_RUNS = {
    "core": (SUITES["core"], CLIENT_DEFAULT, MINIMUM_CASES["core"]),
    "compression": (SUITES["compression"], CLIENT_DEFAULT, MINIMUM_CASES["compression"]),
    "compression without context takeover": (
        [arg for case in NO_CONTEXT_TAKEOVER_CASES for arg in ("-i", case + "*")],
        CLIENT_NO_CONTEXT_TAKEOVER,
        18 * len(NO_CONTEXT_TAKEOVER_CASES),
    ),
}
RUN_LIMIT = 900
CLIENT_CASES_AT_ONCE = 2  # as the server runs get with -p 2


def selection(cases: list[str], minimum: int, full: bool) -> tuple[list[str], int]:
    """kosoku's arguments and the least number of cases that must run: ``cases``
    as they are for a full run (or with FASTWS_AUTOBAHN_FULL), else only the
    compression cases x.y.2-9 of them (a core selection is always run in full)."""
    included = [case for flag, case in zip(cases[::2], cases[1::2]) if flag == "-i"]
    if full or FULL or not any(case.startswith(("12.", "13.")) for case in included):
        return cases, minimum
    return cases + SAMPLE_EXCLUDES, minimum * 8 // 18


@pytest.fixture(autouse=True)
def backend(codec, monkeypatch):
    use_codec(monkeypatch, codec)


def compiled(codec) -> bool:
    """Whether ``codec`` (the fixture's module) is the compiled backend."""
    return codec.__name__ == MODULES["cython"]


def kosoku_command() -> list[str]:
    executable = shutil.which("kosoku") or str(Path(sys.executable).with_name("kosoku"))
    if not Path(executable).exists():
        raise RuntimeError("kosoku not found: pip install '.[test]'")
    return [executable]


def failures(report_dir: Path, minimum: int, passing: set = PASSING, declined: tuple = ()) -> list:
    """The cases that did not pass; those starting with one of ``declined`` may
    also be UNIMPLEMENTED (the fuzzer declined the offer made)."""
    index = json.loads((report_dir / "index.json").read_text())
    (cases,) = index.values()
    assert len(cases) >= minimum, f"only {len(cases)} cases ran"
    return [
        (case, result["behavior"], result["behaviorClose"])
        for case, result in cases.items()
        if not (declined and case.startswith(declined) and result["behavior"] == "UNIMPLEMENTED")
        and (result["behavior"] not in passing or result["behaviorClose"] not in passing)
    ]


async def echo(ws):
    async for message in ws:
        await ws.send(message)


class EchoListener(Listener):
    def on_message(self, ws, message):
        ws.send_nowait(message)


@pytest.mark.timeout(RUN_LIMIT + 60)
@pytest.mark.parametrize(
    ("suite", "api"),
    [("compression", "async for"), ("compression", "listener"), ("core", "async for"), ("core", "listener")],
)
@async_test
async def test_fastws_server_passes_autobahn(suite, api, codec, tmp_path):
    cases, minimum = selection(SUITES[suite], MINIMUM_CASES[suite], api == "async for" and compiled(codec))
    options = CORE_OPTIONS if suite == "core" else OPTIONS
    app = dict(listener=EchoListener) if api == "listener" else dict(handler=echo)
    async with serve(**app, compression=SERVER_DEFAULT, **options) as server:
        fuzzer = await asyncio.create_subprocess_exec(
            *kosoku_command(),
            f"127.0.0.1:{server.port}",
            *cases,
            "-p",
            "2",
            "-o",
            str(tmp_path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _, stderr = await asyncio.wait_for(fuzzer.communicate(), RUN_LIMIT)
        finally:
            if fuzzer.returncode is None:
                fuzzer.kill()
    assert (tmp_path / "index.json").exists(), stderr.decode()[-2000:]
    assert failures(tmp_path, minimum, STRICT if suite == "core" else PASSING) == []


async def run_case(url: str, compression: PerMessageDeflate) -> None:
    try:
        async with connect(url, compression=compression, **OPTIONS) as ws:
            async for message in ws:
                await ws.send(message)
    except (WebSocketError, OSError):
        pass  # cases that break the protocol end with the client failing the connection


@pytest.mark.timeout(RUN_LIMIT + 60)
@pytest.mark.parametrize("run", sorted(CLIENT_RUNS))
@async_test
async def test_fastws_client_passes_autobahn(run, codec, tmp_path):
    cases, compression, minimum = CLIENT_RUNS[run]
    cases, minimum = selection(cases, minimum, compiled(codec))
    fuzzer = await asyncio.create_subprocess_exec(
        *kosoku_command(),
        "-m",
        "fuzzingserver",
        "127.0.0.1:0",
        *cases,
        "-o",
        str(tmp_path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(fuzzer.stderr.readline(), 60)
        match = re.search(rb"ws://127\.0\.0\.1:(\d+)", line)
        assert match, line
        base = f"ws://127.0.0.1:{int(match.group(1))}"
        async with connect(f"{base}/getCaseCount") as ws:
            count = int(await ws.recv())
        numbers = iter(range(1, count + 1))

        async def run_cases() -> None:
            for case in numbers:  # shared: each case is taken once
                await asyncio.wait_for(run_case(f"{base}/runCase?case={case}&agent=fastws", compression), 120)

        await asyncio.gather(*(run_cases() for _ in range(CLIENT_CASES_AT_ONCE)))
        async with connect(f"{base}/updateReports?agent=fastws"):
            pass
        await asyncio.wait_for(fuzzer.wait(), 120)
    finally:
        if fuzzer.returncode is None:
            fuzzer.kill()
            await fuzzer.wait()
    declined = NO_CONTEXT_TAKEOVER_CASES if compression is CLIENT_DEFAULT else ()
    assert failures(tmp_path, minimum, declined=declined) == []
