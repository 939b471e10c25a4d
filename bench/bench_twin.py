#!/usr/bin/env python
"""The pure-Python twin (``fastws._codec_py``) against websockets without its C extension.

    python bench/bench_twin.py                      # sans-I/O parse + echo, ~3 min on 2 cores
    python bench/bench_twin.py --quick              # rough, ~40 s
    python bench/bench_twin.py --baseline b4fc805   # also time the twin as it was at that commit

Two measurements, each with the peers side by side in the same run:

1. **sans-I/O receive path.** A stream of masked client->server binary frames
   (every frame its own random key; masked here by plain big-integer XOR, not by
   the code under test) cut into 64 KiB chunks is fed to a fresh
   ``fastws.connection.Connection(is_client=False, codec=fastws._codec_py)``
   (``receive_data``) and to websockets' ``ServerProtocol`` after an opening
   handshake (``receive_data`` + ``events_received``). websockets runs with the
   pure-Python ``websockets.utils.apply_mask`` (what it uses when its C
   extension ``websockets.speedups`` is missing: ``websockets.frames`` imports
   ``apply_mask`` from ``.speedups`` and falls back to ``.utils``; websockets 17
   has no run-time switch, so the module global ``websockets.frames.apply_mask``
   is swapped) and, for reference only, with its C mask. Both sides use their
   default message-size limit (1 MiB). Implementations are timed in turns
   (A B C, A B C, ...), best of N runs of >= ``--min-time`` s, gc off.

2. **Round-trip echo.** ``bench/servers/fastws_async.py`` with
   ``FASTWS_CODEC=python`` and ``bench/servers/websockets_echo.py`` with
   ``websockets.speedups`` blocked (``sys.modules["websockets.speedups"] = None``
   before websockets is imported: the import falls back to ``utils.apply_mask``),
   both on the default asyncio loop, driven in turns by the same client
   (``python -m fastws bench --mode roundtrip``, compiled codec). Server CPU time
   per echo is reported beside msg/s: it does not depend on the client or on
   other jobs delaying the server.

Markdown goes to stdout and to bench/results/twin.md (``--output``).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.util
import os
import platform
import random
import shlex
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from types import ModuleType

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import websockets  # noqa: E402
import websockets.frames  # noqa: E402
import websockets.utils  # noqa: E402
from websockets.protocol import OPEN  # noqa: E402
from websockets.server import ServerProtocol  # noqa: E402

from _procs import (  # noqa: E402
    LIVE,
    busy_s,
    cpu_model,
    fastws_bench,
    free_port,
    kill,
    proc_cpu_s,
    self_cpu_s,
    version,
    wait_for_port,
)
from fastws import _codec_py  # noqa: E402
from fastws.connection import Connection  # noqa: E402

KiB = 1024
SIZES = [16, KiB, 64 * KiB]
CHUNK = 64 * KiB
FRAMES = {16: 20_000, KiB: 2_000, 64 * KiB: 128}
FRAMES_QUICK = {16: 5_000, KiB: 500, 64 * KiB: 32}
ECHO_SIZES = [16, KiB, 64 * KiB]

WS_PURE_MASK = websockets.utils.apply_mask
try:
    from websockets.speedups import apply_mask as WS_C_MASK
except ImportError:  # pragma: no cover - websockets built without its extension
    WS_C_MASK = None


def fmt_size(n: int) -> str:
    return f"{n // KiB} KiB" if n >= KiB else f"{n} B"


def fmt_rate(x: float) -> str:
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"]
    out.append("|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|")
    for r in rows:
        out.append(
            "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"
        )
    return "\n".join(out)


def load_baseline(rev: str) -> tuple[ModuleType, str, str]:
    """``src/fastws/_codec_py.py`` as it was at ``rev``, imported as a sibling module."""
    source = subprocess.run(
        ["git", "show", f"{rev}:src/fastws/_codec_py.py"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    path = os.path.join(tempfile.mkdtemp(prefix="twin-baseline-"), "_codec_py_baseline.py")
    with open(path, "wb") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("fastws._codec_py_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    short = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True, text=True)
    return module, path, short.stdout.strip()


# -- 1. sans-I/O ------------------------------------------------------------------


def xor_mask(data: bytes, key: bytes) -> bytes:
    """Masking independent of both libraries under test."""
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


def build_stream(size: int, count: int) -> tuple[list[bytes], bytes]:
    rng = random.Random(size)
    payloads = [rng.randbytes(size) for _ in range(min(count, 16))]
    parts = []
    for i in range(count):
        payload = payloads[i % len(payloads)]
        key = rng.randbytes(4)
        if size < 126:
            head = struct.pack("!BB", 0x82, 0x80 | size)
        elif size < 65536:
            head = struct.pack("!BBH", 0x82, 0x80 | 126, size)
        else:
            head = struct.pack("!BBQ", 0x82, 0x80 | 127, size)
        parts.append(head + key + xor_mask(payload, key))
    stream = b"".join(parts)
    return [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)], payloads[(count - 1) % len(payloads)]


def fastws_factory(codec: ModuleType):
    def make():
        receive = Connection(is_client=False, codec=codec).receive_data
        got: list = []

        def feed_all(chunks):
            n = 0
            for c in chunks:
                events = receive(c)
                if events:
                    n += len(events)
                    got[:] = events[-1:]
            return n

        return feed_all, lambda: got[-1].payload

    return make


HANDSHAKE = (
    b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def websockets_factory(mask):
    def make():
        proto = ServerProtocol()
        proto.receive_data(HANDSHAKE)
        (request,) = proto.events_received()
        proto.send_response(proto.accept(request))
        proto.data_to_send()
        assert proto.state is OPEN, proto.state
        receive, events = proto.receive_data, proto.events_received
        got: list = []

        def feed_all(chunks):
            n = 0
            for c in chunks:
                receive(c)
                evs = events()
                if evs:
                    n += len(evs)
                    got[:] = evs[-1:]
            return n

        return feed_all, lambda: got[-1].data

    make.mask = mask  # swapped into websockets.frames around every call
    return make


def with_mask(make, feed_all):
    mask = getattr(make, "mask", None)
    if mask is None:
        return feed_all

    def run(chunks):
        saved = websockets.frames.apply_mask
        websockets.frames.apply_mask = mask
        try:
            return feed_all(chunks)
        finally:
            websockets.frames.apply_mask = saved

    return run


def bench_sansio(impls, frames, min_time: float, repeats: int) -> dict:
    """{size: {name: [msg/s per run]}}; runs of every implementation alternate."""
    pc = time.perf_counter
    out: dict = {}
    for size in SIZES:
        count = frames[size]
        chunks, last_payload = build_stream(size, count)
        timers = {}
        for name, make in impls:
            feed_all, last = make()
            n = with_mask(make, feed_all)(chunks)
            if n != count or last() != last_payload:
                raise SystemExit(f"self-check failed for {name} at {fmt_size(size)}: {n}/{count} messages")

            def timed(loops, make=make, chunks=chunks):
                runners = [with_mask(make, make()[0]) for _ in range(loops)]
                t = pc()
                for r in runners:
                    r(chunks)
                return pc() - t

            # Calibrate the passes per run once, so every run lasts >= min_time.
            loops = 1
            while timed(loops) < min_time / 4:
                loops *= 2
            timers[name] = (timed, loops * 4)
        out[size] = {name: [] for name, _ in impls}
        gc_was = gc.isenabled()
        gc.disable()
        try:
            for r in range(repeats):
                for name, (timed, loops) in timers.items():
                    out[size][name].append(count * loops / timed(loops))
                print(f"\rsans-I/O {fmt_size(size):>6}: run {r + 1}/{repeats}", end="", file=sys.stderr, flush=True)
        finally:
            if gc_was:
                gc.enable()
        print(file=sys.stderr)
    return out


# -- 2. echo ----------------------------------------------------------------------

WS_PURE_SERVER = (
    "import runpy, sys; sys.modules['websockets.speedups'] = None; "
    "import websockets.frames, websockets.utils; "
    "assert websockets.frames.apply_mask is websockets.utils.apply_mask; "
    "sys.argv = [sys.argv[1]] + sys.argv[2:]; sys.path.insert(0, 'servers'); "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)
BASELINE_SERVER = (
    "import importlib.util, runpy, sys; import fastws.codec; "
    "spec = importlib.util.spec_from_file_location('fastws._codec_py_baseline', sys.argv[1]); "
    "m = importlib.util.module_from_spec(spec); sys.modules[spec.name] = m; spec.loader.exec_module(m); "
    "[setattr(fastws.codec, n, getattr(m, n)) for n in m.__all__]; "
    "assert fastws.codec.FrameParser is m.FrameParser; "
    "sys.argv = sys.argv[2:]; sys.path.insert(0, 'servers'); runpy.run_path(sys.argv[0], run_name='__main__')"
)


def start_server(name: str, cmd: list[str], env: dict) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        cmd + ["--port", str(port)],
        cwd=HERE,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    LIVE[proc.pid] = proc
    failure = wait_for_port(proc, port, 30)
    if failure is None:
        return proc, port
    if proc.poll() is not None:
        raise SystemExit(f"{name} server exited: {proc.stderr.read().decode(errors='replace')[-2000:]}")
    kill(proc)
    raise SystemExit(f"{name} server {failure}")


def echo_servers(baseline_path: str | None) -> list[tuple[str, list[str], dict]]:
    py = sys.executable
    env = dict(os.environ)
    env.pop("FASTWS_CODEC", None)
    twin_env = dict(env, FASTWS_CODEC="python")
    servers = [
        ("fastws twin (async for)", [py, "servers/fastws_async.py"], twin_env),
        ("websockets, pure-Python mask", [py, "-c", WS_PURE_SERVER, "servers/websockets_echo.py"], env),
    ]
    if baseline_path:
        servers.insert(
            1,
            ("fastws twin @ baseline", [py, "-c", BASELINE_SERVER, baseline_path, "servers/fastws_async.py"], twin_env),
        )
    return servers


def client_run(port: int, size: int, duration: float, warmup: float) -> dict:
    args = ["-c", "1", "-d", str(duration), "-s", str(size), "--mode", "roundtrip", "--warmup", str(warmup)]
    env = dict(os.environ, FASTWS_CODEC="cython")
    return fastws_bench(f"ws://127.0.0.1:{port}/", args, duration + warmup + 60, env=env, cwd=HERE)


def bench_echo(servers, sizes, duration: float, warmup: float, repeats: int) -> dict:
    """{size: {name: [(msg/s, server µs per echo) per run]}}; servers alternate per run."""
    procs = {}
    out: dict = {size: {name: [] for name, _, _ in servers} for size in sizes}
    try:
        for name, cmd, env in servers:
            procs[name] = start_server(name, cmd, env)
        for size in sizes:
            for r in range(repeats):
                for name, _, _ in servers:
                    proc, port = procs[name]
                    cpu0 = proc_cpu_s(proc.pid)
                    data = client_run(port, size, duration, warmup)
                    cpu = proc_cpu_s(proc.pid) - cpu0
                    rate = data["msgs_per_s"]
                    us = cpu / (rate * (warmup + data["duration_s"])) * 1e6
                    out[size][name].append((rate, us))
                print(f"\recho {fmt_size(size):>6}: run {r + 1}/{repeats}", end="", file=sys.stderr, flush=True)
            print(file=sys.stderr)
    finally:
        for proc, _ in procs.values():
            kill(proc)
    return out


# -- report -----------------------------------------------------------------------


def spread(values: list[float]) -> str:
    best = max(values)
    return f"{(best - min(values)) / best * 100:.0f}%"


def report(meta: dict, sansio: dict, names: list[str], echo: dict | None, echo_names: list[str]) -> str:
    peer = "websockets, pure-Python mask"
    lines = ["# The Python twin against websockets without its C extension", ""]
    lines += [f"- {k}: {v}" for k, v in meta.items()]
    if not sansio:
        lines.append("")
    else:
        lines += _sansio_report(sansio, names, peer)
    return _echo_report(lines, echo, echo_names, peer)


def _sansio_report(sansio: dict, names: list[str], peer: str) -> list[str]:
    lines = ["", "## sans-I/O receive path (messages/s; masked binary frames in 64 KiB chunks)", ""]
    lines += [
        "Best of the runs; the spread is (best − worst) ÷ best over the runs. "
        f"`× {peer}` compares best with best; `run ratios` gives the ratio of the twin to "
        "websockets within each run (A and B timed back to back), lowest–highest.",
        "",
    ]
    header = ["implementation"] + [f"{fmt_size(s)}" for s in SIZES]
    rows = []
    for name in names:
        rows.append([name] + [f"{fmt_rate(max(sansio[s][name]))} (±{spread(sansio[s][name])})" for s in SIZES])
    lines += [table(header, rows), ""]
    rows = []
    for name in names:
        if name == peer:
            continue
        cells = []
        for s in SIZES:
            best = max(sansio[s][name]) / max(sansio[s][peer])
            per_run = [a / b for a, b in zip(sansio[s][name], sansio[s][peer])]
            cells.append(f"{best:.2f}× ({min(per_run):.2f}–{max(per_run):.2f})")
        rows.append([name] + cells)
    lines += [table([f"× {peer}"] + header[1:], rows), ""]
    return lines


def _echo_report(lines: list[str], echo: dict | None, echo_names: list[str], peer: str) -> str:
    if echo:
        sizes = sorted(echo)
        lines += ["## Round-trip echo (one connection, one message in flight; default asyncio loop)", ""]
        lines += [
            "Client: `python -m fastws bench --mode roundtrip` on the compiled codec, the same for every server. "
            "msg/s: best run (spread); server µs/echo: the server process's CPU time ÷ echoes, lowest run. "
            f"Ratios to `{peer}`: msg/s (best ÷ best; in brackets the median and range of the ratios "
            "run by run, each pair measured back to back) and CPU per echo (theirs ÷ ours, > 1 means "
            "the twin needs less CPU).",
            "",
        ]
        header = ["server"] + [f"{fmt_size(s)} msg/s" for s in sizes] + [f"{fmt_size(s)} µs/echo" for s in sizes]
        rows = []
        for name in echo_names:
            rates = {s: [r for r, _ in echo[s][name]] for s in sizes}
            cpus = {s: [u for _, u in echo[s][name]] for s in sizes}
            rows.append(
                [name]
                + [f"{fmt_rate(max(rates[s]))} (±{spread(rates[s])})" for s in sizes]
                + [f"{min(cpus[s]):.1f}" for s in sizes]
            )
        lines += [table(header, rows), ""]
        rows = []
        for name in echo_names:
            if name == peer:
                continue
            cells = []
            for s in sizes:
                ours = max(r for r, _ in echo[s][name])
                theirs = max(r for r, _ in echo[s][peer])
                per_run = sorted(a / b for (a, _), (b, _) in zip(echo[s][name], echo[s][peer]))
                median = statistics.median(per_run)
                cells.append(f"{ours / theirs:.2f}× (median {median:.2f}, {per_run[0]:.2f}–{per_run[-1]:.2f})")
            for s in sizes:
                ours = min(u for _, u in echo[s][name])
                theirs = min(u for _, u in echo[s][peer])
                cells.append(f"{theirs / ours:.2f}×")
            rows.append([name] + cells)
        lines += [table([f"× {peer}"] + header[1:], rows), ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer frames, runs and seconds: rough numbers")
    ap.add_argument("--repeats", type=int, help="runs per cell (default 7, --quick 3)")
    ap.add_argument("--min-time", type=float, help="seconds per sans-I/O run (default 0.3, --quick 0.1)")
    ap.add_argument("--baseline", metavar="REV", help="also time src/fastws/_codec_py.py as of this git revision")
    ap.add_argument("--no-echo", action="store_true", help="sans-I/O only")
    ap.add_argument("--no-sansio", action="store_true", help="echo only")
    ap.add_argument("--echo-duration", type=float, help="seconds per echo run (default 1.5, --quick 0.5)")
    ap.add_argument("--echo-repeats", type=int, help="echo runs per server and size (default 3, --quick 2)")
    ap.add_argument("--output", default=os.path.join(HERE, "results", "twin.md"), help="markdown file ('' for none)")
    args = ap.parse_args()
    repeats = args.repeats or (3 if args.quick else 7)
    min_time = args.min_time or (0.1 if args.quick else 0.3)
    echo_duration = args.echo_duration or (0.5 if args.quick else 1.5)
    echo_repeats = args.echo_repeats or (2 if args.quick else 3)

    assert websockets.frames.apply_mask is WS_C_MASK or WS_C_MASK is None
    baseline = baseline_path = None
    impls = [("fastws twin (Connection)", fastws_factory(_codec_py))]
    if args.baseline:
        baseline, baseline_path, short = load_baseline(args.baseline)
        impls.append((f"fastws twin @ {short}", fastws_factory(baseline)))
    impls.append(("websockets, pure-Python mask", websockets_factory(WS_PURE_MASK)))
    if WS_C_MASK is not None:
        impls.append(("websockets, C mask (reference)", websockets_factory(WS_C_MASK)))

    busy0, self0, wall0 = busy_s(), self_cpu_s(), time.monotonic()
    sansio = {} if args.no_sansio else bench_sansio(impls, FRAMES_QUICK if args.quick else FRAMES, min_time, repeats)
    echo = echo_names = None
    if not args.no_echo:
        servers = echo_servers(baseline_path)
        if args.baseline:
            servers[1] = (f"fastws twin @ {short} (async for)",) + servers[1][1:]
        echo_names = [name for name, _, _ in servers]
        echo = bench_echo(servers, ECHO_SIZES, echo_duration, 0.3, echo_repeats)
    wall = time.monotonic() - wall0
    busy1 = busy_s()
    load = ""
    if busy0 is not None and busy1 is not None:
        # Our own CPU (this process) is excluded; the echo servers and clients are not, so
        # during the echo part this counts them too: read it as an upper bound.
        load = f"{max(0.0, (busy1 - busy0) - (self_cpu_s() - self0)) / wall:.2f} cores busy besides this process"

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    head = head.stdout.strip() or "?"
    meta = {
        "command": "python " + " ".join(shlex.quote(a) for a in ["bench/bench_twin.py"] + sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{cpu_model()}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable)",
        "Python": f"{platform.python_implementation()} {platform.python_version()} on {platform.platform()}",
        "versions": f"fastws working tree at {head} ({version('pyfastws')} as a distribution), "
        f"websockets {websockets.__version__}",
        "timing": f"sans-I/O: best of {repeats} runs of ≥ {min_time} s each, gc off, in turns; "
        f"echo: {echo_repeats} runs of {echo_duration} s (+0.3 s warm-up) per server and size, in turns",
        "load during the run": load or "n/a",
    }
    if args.baseline:
        subject = subprocess.run(
            ["git", "log", "-1", "--format=%cs %s", args.baseline], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        meta["baseline"] = (
            f"`fastws twin @ {short}` is src/fastws/_codec_py.py as of {short} ({subject[:60]}…), "
            "timed in the same run as the working tree's: before and after side by side"
        )
    names = [name for name, _ in impls]
    text = report(meta, sansio, names, echo, echo_names or [])
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
