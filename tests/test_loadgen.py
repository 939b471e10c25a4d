"""`fastws bench`, the load generator: histogram, modes, servers, CLI."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import subprocess
import sys
import time
from typing import Optional

import pytest

from fastws import serve
from fastws.loadgen import BenchResult, Histogram, add_arguments, bench, run

from .support.asyncio import async_test

# -- echo servers ------------------------------------------------------------------


async def echo(ws):
    async for message in ws:
        await ws.send(message)


class fastws_echo:
    """An in-process fastws echo server; the URI is the context value."""

    def __init__(self, handler=echo):
        self.handler = handler

    async def __aenter__(self):
        self.server = await serve(self.handler, max_message_size=None)
        return f"ws://127.0.0.1:{self.server.port}/"

    async def __aexit__(self, *exc_info):
        await self.server.close()


class websockets_echo:
    async def __aenter__(self):
        from websockets.asyncio.server import serve as websockets_serve

        async def handler(ws):
            async for message in ws:
                await ws.send(message)

        self.server = await websockets_serve(handler, "127.0.0.1", 0, max_size=None, compression=None)
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/"

    async def __aexit__(self, *exc_info):
        self.server.close()
        await self.server.wait_closed()


class picows_echo:
    async def __aenter__(self):
        picows = pytest.importorskip("picows")

        class Echo(picows.WSListener):
            def on_ws_frame(self, transport, frame):
                if frame.msg_type == picows.WSMsgType.CLOSE:
                    transport.send_close(frame.get_close_code(), frame.get_close_message())
                    transport.disconnect()
                elif frame.msg_type in (picows.WSMsgType.TEXT, picows.WSMsgType.BINARY, picows.WSMsgType.CONTINUATION):
                    transport.send(frame.msg_type, frame.get_payload_as_bytes(), frame.fin)

        self.server = await picows.ws_create_server(lambda request: Echo(), "127.0.0.1", 0)
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/"

    async def __aexit__(self, *exc_info):
        self.server.close()
        await self.server.wait_closed()


SERVERS = {"fastws": fastws_echo, "websockets": websockets_echo, "picows": picows_echo}

MODE_OPTIONS = {
    "roundtrip": {},
    "pipelined": {"window": 8},
    "rate": {"rate": 400},
}


def check_sane(result: BenchResult) -> None:
    assert result.messages > 0
    assert result.messages_sent >= result.messages
    assert result.errors == 0, result.error_details
    assert result.unexpected_closes == 0 and result.lost == 0
    assert result.min_us <= result.p50_us <= result.p90_us <= result.p99_us <= result.p999_us <= result.max_us
    assert result.max_us < 10_000_000
    assert result.bytes_received > 0 and result.mb_per_s > 0
    assert result.histogram.count == result.messages
    data = json.loads(result.to_json())
    assert data["messages"] == result.messages and data["p99_us"] == result.p99_us
    assert sum(count for _, count in data["latency_histogram"]) == result.messages
    # The load generator's own CPU, in cores: the server here shares the process, so it counts too.
    assert result.client_cpu is not None and 0 < result.client_cpu <= (os.cpu_count() or 1) + 0.5
    assert data["client_cpu"] == result.client_cpu


# -- histogram -------------------------------------------------------------------------


def test_histogram_is_exact_below_256():
    hist = Histogram()
    for value in range(1, 101):
        hist.record(value)
    assert hist.percentiles((50, 90, 99, 100)) == {50: 50, 90: 90, 99: 99, 100: 100}
    assert hist.value_at_percentile(0) == 1
    assert (hist.min, hist.max, hist.count, hist.mean) == (1, 100, 100, 50.5)


def test_histogram_percentiles_within_one_percent():
    hist = Histogram()
    values = list(range(1, 100_001))
    random.Random(1).shuffle(values)
    for value in values:
        hist.record(value)
    for p in (10, 50, 90, 99, 99.9):
        exact = p * 1000
        assert abs(hist.value_at_percentile(p) - exact) / exact < 0.01, p
    assert hist.value_at_percentile(100) == 100_000
    assert abs(hist.stdev - 28_867.5) / 28_867.5 < 0.01
    spectrum = hist.spectrum()
    assert spectrum[-1] == (1.0, 100_000)
    assert all(a[0] < b[0] and a[1] < b[1] for a, b in zip(spectrum, spectrum[1:]))


def test_histogram_buckets_bound_every_value():
    rng = random.Random(2)
    for value in [0, 1, 255, 256, 257, 511, 512, 60_000_000, (1 << 32) - 1] + [
        rng.randrange(1 << rng.randrange(1, 32)) for _ in range(5000)
    ]:
        low, high = Histogram.bucket_range(Histogram.index(value))
        assert low <= value <= high
        assert high - low + 1 <= max(1, value / 128)


def test_histogram_clamps_merges_and_resets():
    a, b = Histogram(), Histogram()
    a.record(-5)
    a.record(1 << 40)  # above the range: clamped
    b.record(1000)
    a.merge(b)
    assert (a.count, a.min, a.max) == (3, 0, (1 << 32) - 1)
    assert a.value_at_percentile(50) == Histogram.bucket_range(Histogram.index(1000))[1]
    a.reset()
    assert (a.count, a.value_at_percentile(99), a.percentiles()) == (0, 0, {50: 0, 90: 0, 99: 0, 99.9: 0})


def test_histogram_reads_between_recordings_see_every_value():
    """Values wait in an array until a read folds them in; reads in between,
    ``fold()`` and ``reset()`` keep every value exactly once."""
    hist = Histogram()
    record = hist.record
    for value in (5, 300, 70_000):
        record(value)
    assert (hist.count, hist.min, hist.max, hist.total) == (3, 5, 70_000, 70_305)
    record(1)
    hist.fold()
    hist.fold()  # nothing left to fold: no double counting
    assert (hist.count, hist.min, sum(hist.counts)) == (4, 1, 4)
    hist.reset()
    record(42)  # the bound recorder survives a reset
    assert (hist.count, hist.min, hist.max, hist.percentiles((50,))) == (1, 42, 42, {50: 42})


# -- modes against servers -----------------------------------------------------------------


@pytest.mark.parametrize("mode", list(MODE_OPTIONS))
@pytest.mark.parametrize("server", list(SERVERS))
@async_test
async def test_each_mode_against_each_server(server, mode):
    async with SERVERS[server]() as uri:
        result = await bench(
            uri,
            connections=3,
            duration=0.6,
            sizes=(64, 3000),
            mode=mode,
            progress=False,
            verify=True,
            **MODE_OPTIONS[mode],
        )
    check_sane(result)
    assert result.connected == 3 and result.mode == mode
    if mode == "rate":
        # Broad: the machine may be loaded, but the open loop keeps its schedule.
        assert 0.5 * 400 <= result.msgs_per_s <= 1.5 * 400
        assert result.send_lag_p99_us is not None
    if mode == "pipelined":
        assert result.window == 8


@async_test
async def test_summary_says_when_the_client_is_the_bottleneck():
    async with fastws_echo() as uri:
        result = await bench(uri, messages=50, progress=False)
    check_sane(result)
    busy = dataclasses.replace(result, client_cpu=0.97).summary()
    assert "client CPU: 97% of a core" in busy and "the client may be the bottleneck" in busy
    idle = dataclasses.replace(result, client_cpu=0.25).summary()
    assert "client CPU: 25% of a core" in idle and "bottleneck" not in idle


@async_test
async def test_message_count_text_and_warmup():
    async with fastws_echo() as uri:
        result = await bench(
            uri,
            connections=2,
            messages=300,
            sizes=[10, 20, 30],
            binary=False,
            mode="pipelined",
            window=5,
            warmup=0.2,
            progress=False,
            verify=True,
        )
    check_sane(result)
    assert result.messages == result.messages_sent == 300
    assert result.bytes_received == result.bytes_sent == 100 * (10 + 20 + 30)
    assert result.in_flight_at_end == 0 and not result.binary


@async_test
async def test_rate_mode_measures_from_the_scheduled_time():
    """A stall hides nothing: messages due during it count the wait (no coordinated omission)."""
    seen = 0

    async def stalling_echo(ws):
        nonlocal seen
        async for message in ws:
            seen += 1
            if seen == 50:
                time.sleep(0.3)  # blocks the whole loop, the client's sender included
            await ws.send(message)

    async with fastws_echo(stalling_echo) as uri:
        result = await bench(uri, connections=2, duration=1.0, mode="rate", rate=500, progress=False)
    check_sane(result)
    assert result.max_us >= 250_000
    # ~150 messages were due during the 300 ms stall; about 100 of them by more than 100 ms.
    slow = sum(n for value, n in result.histogram.buckets() if value > 100_000)
    assert slow >= 50, slow


@pytest.mark.parametrize("abrupt", [False, True])
@async_test
async def test_unexpected_close_is_counted(abrupt):
    async def close_after_five(ws):
        for _ in range(5):
            await ws.send(await ws.recv())
        if abrupt:
            ws.abort()
        else:
            await ws.close(4000, "enough")

    started = time.perf_counter()
    async with fastws_echo(close_after_five) as uri:
        result = await bench(uri, connections=3, duration=20, progress=False)
    assert time.perf_counter() - started < 15  # ends when the last connection is gone
    assert result.unexpected_closes == 3
    assert result.close_codes == {1006 if abrupt else 4000: 3}
    assert result.messages == 15
    # The 6th message is lost if it was sent before the close frame arrived
    # (it may come in the same chunk as the 5th echo, and then it is not sent).
    assert result.lost <= 3 and result.messages_sent - result.messages == result.lost
    assert result.errors == 0
    assert json.loads(result.to_json())["close_codes"] == {"1006" if abrupt else "4000": 3}


@async_test
async def test_wrong_echoes_are_errors():
    async def corrupt(ws):
        async for message in ws:
            await ws.send(message[:-1] if len(message) == 64 else bytes(len(message)))

    async with fastws_echo(corrupt) as uri:
        sized = await bench(uri, messages=20, sizes=(64,), progress=False)
        content = await bench(uri, messages=20, sizes=(100,), verify=True, progress=False)
    assert sized.errors == 20 and sized.error_details == {"echo mismatch": 20}
    assert content.errors == 20


@async_test
async def test_rate_mode_backlogs_when_the_server_stops_reading():
    """The write buffer (ws.buffered_amount) stays near the high-water mark:
    messages due while the server reads nothing wait in the backlog, unsent."""

    async def deaf(ws):
        await asyncio.sleep(1.0)  # reads nothing: its reading pauses, TCP pushes back

    async with fastws_echo(deaf) as uri:
        result = await bench(
            uri, duration=0.5, mode="rate", rate=2000, sizes=(65536,), progress=False, close_timeout=0.3
        )
    # ~1000 messages (64 MiB) were due; what was written is what the kernel
    # buffers took plus 256 KiB, far less.
    assert result.messages_sent < 400, result.messages_sent
    assert result.in_flight_at_end >= 500
    assert result.oldest_in_flight_us >= 400_000


@async_test
async def test_bad_arguments_and_unreachable_server():
    with pytest.raises(ValueError):
        await bench("ws://127.0.0.1:1/", mode="rate")
    with pytest.raises(ValueError):
        await bench("ws://127.0.0.1:1/", rate=100)
    with pytest.raises(ValueError):
        await bench("ws://127.0.0.1:1/", mode="firehose")
    async with fastws_echo() as uri:
        pass  # the port is free again
    with pytest.raises(ConnectionError):
        await bench(uri, duration=0.1, progress=False)


# -- command line ---------------------------------------------------------------------------


def parse(*argv):
    parser = argparse.ArgumentParser(prog="fastws bench")
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_argument_parsing():
    args = parse("ws://h/", "-s", "256,8k", "-s", "1m", "-d", "1.5s", "-c", "4", "--text")
    assert args.size == [[256, 8192], [1 << 20]]
    assert (args.duration, args.connections, args.text, args.mode) == (1.5, 4, True, None)
    with pytest.raises(SystemExit):
        parse("ws://h/", "-s", "big")


def test_cli_json_and_progress(cli_server, capsys):
    code = run(parse(f"ws://127.0.0.1:{cli_server}/", "-d", "1.3", "-c", "2", "--rate", "300", "--json"))
    out, err = capsys.readouterr()
    assert code == 0
    data = json.loads(out)
    assert data["mode"] == "rate" and data["messages"] > 0 and data["errors"] == 0
    assert len(data["throughput"]) >= 1
    assert "msg/s" in err and "p99" in err  # the progress line


def test_cli_human_output_quiet(cli_server, capsys):
    code = run(parse(f"ws://127.0.0.1:{cli_server}/", "-n", "200", "--mode", "pipelined", "-q", "--verify"))
    out, err = capsys.readouterr()
    assert code == 0 and err == ""
    assert "200 messages" in out and "p99" in out


def test_cli_plot(cli_server, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "bench.png"
    assert run(parse(f"ws://127.0.0.1:{cli_server}/", "-d", "1.2", "-q", "--plot", str(path))) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_plot_without_matplotlib(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    assert run(parse("ws://127.0.0.1:1/", "--plot", "x.png")) == 2
    assert "pip install matplotlib" in capsys.readouterr().err


def limit_open_files(soft: int, hard: Optional[int] = None):
    """A preexec_fn: the child starts with these RLIMIT_NOFILE limits (hard: unchanged)."""
    import resource

    def apply() -> None:
        current_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, current_hard if hard is None else hard))

    return apply


def bench_process(port: int, connections: int, preexec_fn) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "fastws", "bench", f"ws://127.0.0.1:{port}/", "-c", str(connections)]
    command += ["-n", str(2 * connections), "-q"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, preexec_fn=preexec_fn)


def test_cli_raises_its_open_file_limit_for_its_connections(cli_server):
    # 60 connections do not fit in a soft limit of 40: the bench raises it (the hard limit allows).
    done = bench_process(cli_server, 60, limit_open_files(40))
    assert done.returncode == 0, done.stderr
    assert "120 messages" in done.stdout


def test_cli_says_when_the_hard_limit_is_too_low(cli_server):
    done = bench_process(cli_server, 60, limit_open_files(40, hard=40))
    assert done.returncode == 2
    assert "60 connections need about 92 open files; the limit is 40 (ulimit -n)" in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_unreachable_server(capsys):
    async def free_port():
        async with fastws_echo() as uri:
            return uri

    uri = asyncio.run(free_port())
    assert run(parse(uri, "-d", "0.2", "-q")) == 1
    assert "cannot connect" in capsys.readouterr().err


@async_test
async def test_deflate_only_on_request():
    async with fastws_echo() as uri:
        plain = await bench(uri, messages=50, progress=False)
        deflated = await bench(uri, messages=50, sizes=(4000,), deflate=True, verify=True, progress=False)
    assert not plain.deflate
    check_sane(deflated)
    assert deflated.deflate and deflated.messages == 50


# -- packaging ----------------------------------------------------------------------------------


def test_import_fastws_does_not_import_the_load_generator():
    # fastws.serve loads fastws.asyncio (lazily, on first use): still no load generator.
    code = (
        "import json, sys, fastws; fastws.serve; print(json.dumps([m for m in sys.modules if m.startswith('fastws')]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    modules = json.loads(out)
    assert "fastws.asyncio" in modules
    assert not [m for m in modules if m == "fastws.loadgen" or m.startswith("fastws.loadgen.")], modules
