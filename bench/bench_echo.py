"""End-to-end echo benchmark: fastws against picows, aiohttp, websockets and Node ws.

Every echo server runs in its own process (pinned to CPU 0), every client run in
its own process (pinned to CPU 1). Two clients drive every server:

- ``picows``: a small picows client (``picows-client`` below), the neutral
  reference: picows is the fastest Python WebSocket library we know of, and it
  is not the code under test;
- ``fastws``: ``fastws bench``, the fastws load generator (callback API).

for each message size, in two modes: ``roundtrip`` (one message in flight on
one connection: latency-bound) and ``pipelined`` (``--window`` messages in
flight on one connection: throughput-bound), on the default asyncio loop and on
uvloop (server and client alike; Node always runs on libuv). Each cell warms up
for ``--warmup`` seconds, then counts echoes for ``--duration`` seconds. For one
(loop, client, mode, size), the servers are measured one after the other, so a
burst of outside load hits one cell of every server rather than every cell of one.

    python bench/bench_echo.py                 # full run, ~10 min
    python bench/bench_echo.py --quick         # smoke run, ~1.5 min, rough numbers
    python bench/bench_echo.py --json          # also save raw numbers to bench/results/echo.json

Markdown goes to stdout, progress to stderr, the chart to bench/results/echo.png.
Figures are messages per second (each echoed once); the ratio in brackets is to
the picows server for the same client, loop, mode and size.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import dataclasses
import datetime
import json
import math
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional

from _procs import LIVE as _LIVE
from _procs import RunLoad, cpu_model, json_result, pick_list
from _procs import kill as _kill
from _procs import kill_all as _kill_all
from _procs import on_signal as _on_signal
from _procs import proc_cpu_split_s as _proc_cpu_split_s
from _procs import version as _version
from fastws._allocator import GLIBC_TUNABLES

HERE = os.path.dirname(os.path.abspath(__file__))
SERVERS_DIR = os.path.join(HERE, "servers")
NODE_DIR = os.path.join(HERE, "node")
RESULTS_DIR = os.path.join(HERE, "results")
PY = sys.executable

KiB = 1024
MiB = 1024 * KiB
SIZES = (256, 8 * KiB, 100 * KiB, 1 * MiB)
QUICK_SIZES = (256, 1 * MiB)
MODES = ("roundtrip", "pipelined")
LOOPS = ("asyncio", "uvloop")
CLIENTS = ("picows", "fastws")
REFERENCE = "picows"


@dataclasses.dataclass(frozen=True)
class ServerSpec:
    key: str
    label: str
    short: str  # table column
    script: str  # in bench/servers, or "node"
    env: tuple[tuple[str, str], ...] = ()


SERVER_SPECS = (
    ServerSpec(
        "fastws-callback", "fastws callback (Cython)", "fastws cb", "fastws_callback.py", (("FASTWS_CODEC", "cython"),)
    ),
    ServerSpec(
        "fastws-async", "fastws async-for (Cython)", "fastws async", "fastws_async.py", (("FASTWS_CODEC", "cython"),)
    ),
    ServerSpec(
        "fastws-python",
        "fastws async-for (Python codec)",
        "fastws py",
        "fastws_async.py",
        (("FASTWS_CODEC", "python"),),
    ),
    ServerSpec("picows", "picows", "picows", "picows_echo.py"),
    # The same server again, in a process of its own: a control. Its ratios to
    # picows are what two identical servers differ by on this machine.
    ServerSpec(
        "picows-control", "picows again (a control: the same server, a second process)", "picows ctl", "picows_echo.py"
    ),
    ServerSpec(
        "picows-websockets", "picows.websockets (websockets' API on picows)", "picows.ws", "picows_websockets_echo.py"
    ),
    ServerSpec("aiohttp", "aiohttp", "aiohttp", "aiohttp_echo.py"),
    ServerSpec("websockets", "websockets", "websockets", "websockets_echo.py"),
    ServerSpec("node-ws", "Node ws + bufferutil", "node ws", "node"),
)
SPEC = {s.key: s for s in SERVER_SPECS}


def malloc_setting(glibc_defaults: bool) -> str:
    """The GLIBC_TUNABLES every server and client of the run gets: the caller's
    own if set, none with --glibc-defaults, else the settings the ``fastws``
    command applies to itself (fastws._allocator). Each process of the run
    then has the same allocator; with glibc's defaults a process that moves
    100 KiB-1 MiB messages as bytes objects shrinks and regrows its heap on
    every few messages (docs/cli.md, "The allocator")."""
    if "GLIBC_TUNABLES" in os.environ:
        return os.environ["GLIBC_TUNABLES"]
    return "" if glibc_defaults else GLIBC_TUNABLES


def process_env(malloc: Optional[str]) -> dict[str, str]:
    """This environment with ``GLIBC_TUNABLES=malloc`` (glibc's defaults if
    empty); None: as it is."""
    env = dict(os.environ)
    if malloc is None:
        return env
    env.pop("GLIBC_TUNABLES", None)
    if malloc:
        env["GLIBC_TUNABLES"] = malloc
    else:
        env["FASTWS_MALLOC"] = "default"  # nor does the fastws client tune itself
    return env


# -- the picows client --------------------------------------------------------------


def picows_client_main(argv: list[str]) -> int:
    """``bench_echo.py picows-client URI ...``: one connection, ``--window``
    binary messages of ``--size`` bytes in flight (1 = round trip); prints one
    JSON line with the echoes per second counted over ``--duration`` seconds
    after ``--warmup`` seconds."""
    ap = argparse.ArgumentParser(prog="bench_echo.py picows-client")
    ap.add_argument("uri")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--window", type=int, default=1)
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--uvloop", action="store_true")
    args = ap.parse_args(argv)

    from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    BINARY, CONTINUATION, CLOSE = WSMsgType.BINARY, WSMsgType.CONTINUATION, WSMsgType.CLOSE
    payload = (bytes(range(256)) * (args.size // 256 + 1))[: args.size]
    size = len(payload)

    class Client(WSListener):
        def __init__(self) -> None:
            self.transport: Optional[WSTransport] = None
            self.received = 0
            self.in_flight = 0
            self.partial = 0  # bytes of a fragmented message so far
            self.errors = 0
            self.checked = False
            self.sending = True
            self.closed = asyncio.get_running_loop().create_future()

        def on_ws_connected(self, transport: WSTransport) -> None:
            self.transport = transport

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            kind = frame.msg_type
            if kind == BINARY or kind == CONTINUATION:
                n = self.partial + frame.payload_size
                if not frame.fin:
                    self.partial = n
                    return
                if n != size:
                    self.errors += 1
                elif not self.checked and kind == BINARY:
                    self.checked = True  # compare the contents once
                    if frame.get_payload_as_bytes() != payload:
                        self.errors += 1
                self.partial = 0
                self.received += 1
                if self.sending:
                    transport.send(BINARY, payload)
                else:
                    self.in_flight -= 1
                    if self.in_flight == 0 and not self.closed.done():
                        self.closed.set_result(None)
            elif kind == CLOSE:
                transport.disconnect()
            else:
                self.errors += 1  # text or an unexpected frame

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            if not self.closed.done():
                self.closed.set_result(None)

    async def run() -> dict[str, Any]:
        transport, client = await ws_connect(Client, args.uri, max_frame_size=64 * MiB)
        for _ in range(args.window):
            transport.send(BINARY, payload)
        client.in_flight = args.window
        await asyncio.sleep(args.warmup)
        c0, t0, cpu0 = client.received, time.perf_counter(), time.process_time()
        await asyncio.sleep(args.duration)
        c1, t1, cpu1 = client.received, time.perf_counter(), time.process_time()
        client.sending = False
        try:
            await asyncio.wait_for(asyncio.shield(client.closed), 10)
        except asyncio.TimeoutError:
            client.errors += 1
        if not transport.is_disconnected:
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()
        return {
            "messages": c1 - c0,
            "duration_s": t1 - t0,
            "msgs_per_s": (c1 - c0) / (t1 - t0),
            "errors": client.errors,
            "client_cpu": round((cpu1 - cpu0) / (t1 - t0), 3),  # cores, as fastws bench reports it
        }

    if args.uvloop:
        import uvloop

        result = uvloop.run(run()) if hasattr(uvloop, "run") else _run_uvloop_policy(uvloop, run)
    else:
        result = asyncio.run(run())
    print(json.dumps(result))
    return 0 if result["messages"] and not result["errors"] else 1


def _run_uvloop_policy(uvloop: Any, main: Any) -> Any:
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        return asyncio.run(main())
    finally:
        asyncio.set_event_loop_policy(None)


# -- processes --------------------------------------------------------------------


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Pinning:
    """Servers on one CPU, clients on another (if there are two usable CPUs)."""

    def __init__(self, enabled: bool) -> None:
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self.enabled = enabled and len(cpus) >= 2
        self.server_cpu = cpus[0] if self.enabled else None
        self.client_cpu = cpus[1] if self.enabled else None

    def preexec(self, cpu: Optional[int]):
        if cpu is None:
            return None

        def pin() -> None:
            os.sched_setaffinity(0, {cpu})

        return pin

    def describe(self) -> str:
        if not self.enabled:
            return "off"
        return f"servers on CPU {self.server_cpu}, clients on CPU {self.client_cpu}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(
        self,
        spec: ServerSpec,
        loop: str,
        pinning: Pinning,
        logdir: str,
        start_timeout: float,
        malloc: Optional[str] = None,
    ) -> None:
        self.spec, self.loop, self.pinning, self.malloc = spec, loop, pinning, malloc
        self.log_path = os.path.join(logdir, f"server-{spec.key}-{loop}.log")
        self.start_timeout = start_timeout
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0
        self.starts = 0

    @property
    def uri(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def command(self) -> list[str]:
        if self.spec.script == "node":
            return ["node", os.path.join(NODE_DIR, "echo_server.js"), str(self.port), "127.0.0.1"]
        cmd = [PY, os.path.join(SERVERS_DIR, self.spec.script), "--port", str(self.port)]
        return cmd + (["--uvloop"] if self.loop == "uvloop" else [])

    def start(self) -> None:
        """Start the server and wait (bounded) until its port accepts connections."""
        self.port = _free_port()
        env = process_env(self.malloc)
        env.pop("FASTWS_CODEC", None)
        env.update(self.spec.env)
        env["PYTHONUNBUFFERED"] = "1"
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"--- start {self.starts}: {shlex.join(self.command())}\n".encode())
        log.flush()
        try:
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=HERE,
                start_new_session=True,
                preexec_fn=self.pinning.preexec(self.pinning.server_cpu),
            )
        finally:
            log.close()
        _LIVE[self.proc.pid] = self.proc
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.spec.label} ({self.loop}) exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"{self.spec.label} ({self.loop}) did not accept on port {self.port} "
                    f"within {self.start_timeout:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_s(self) -> float:
        return sum(self.cpu_split_s())

    def cpu_split_s(self) -> tuple[float, float]:
        """(user, system) CPU seconds so far."""
        return _proc_cpu_split_s(self.proc.pid) if self.alive() else (0.0, 0.0)  # type: ignore[union-attr]

    def stop(self) -> None:
        if self.proc is not None:
            _kill(self.proc)

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""


# -- one cell --------------------------------------------------------------------------


def client_command(client: str, uri: str, size: int, mode: str, window: int, loop: str, args) -> list[str]:
    w = 1 if mode == "roundtrip" else window
    if client == "picows":
        cmd = [PY, os.path.abspath(__file__), "picows-client", uri, "--size", str(size), "--window", str(w)]
        cmd += ["--duration", str(args.duration), "--warmup", str(args.warmup)]
    else:
        cmd = [PY, "-m", "fastws", "bench", uri, "-c", "1", "-d", str(args.duration), "-s", str(size)]
        cmd += ["--mode", mode, "--window", str(w), "--warmup", str(args.warmup), "--json", "-q"]
    return cmd + (["--uvloop"] if loop == "uvloop" else [])


def run_cell(server: ServerProcess, client: str, size: int, mode: str, loop: str, args, pinning: Pinning) -> dict:
    cmd = client_command(client, server.uri, size, mode, args.window, loop, args)
    env = process_env(args.malloc)
    env["FASTWS_CODEC"] = "cython"  # the fastws client always runs on the compiled codec
    cell: dict[str, Any] = {
        "server": server.spec.key,
        "client": client,
        "loop": loop,
        "mode": mode,
        "size": size,
        "window": 1 if mode == "roundtrip" else args.window,
        "msgs_per_s": None,
        "errors": None,
        "command": shlex.join(cmd),
    }
    load, (user0, sys0) = RunLoad(), server.cpu_split_s()
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=HERE,
        start_new_session=True,
        preexec_fn=pinning.preexec(pinning.client_cpu),
    )
    _LIVE[proc.pid] = proc
    try:
        out, err = proc.communicate(timeout=args.warmup + args.duration + 30)
    except subprocess.TimeoutExpired:
        _kill(proc)
        out, err = proc.communicate()
        cell["error"] = "client timed out"
    finally:
        _kill(proc)
    user1, sys1 = server.cpu_split_s()
    user_s, sys_s = max(0.0, user1 - user0), max(0.0, sys1 - sys0)
    other = load.other_cores(user_s + sys_s)
    if other is not None:
        cell["other_load"] = round(other, 2)  # cores busy with other jobs
    cell["server_cpu_s"] = round(user_s + sys_s, 3)
    cell["server_user_s"] = round(user_s, 3)
    data = json_result(out)
    if data is not None:
        cell["msgs_per_s"] = data["msgs_per_s"]
        cell["messages"] = data["messages"]
        cell["duration_s"] = data["duration_s"]
        cell["errors"] = data.get("errors", 0) + data.get("unexpected_closes", 0)
        cell["mb_per_s"] = data["msgs_per_s"] * size / 1e6
        for key in ("p50_us", "p99_us", "client_cpu"):
            if key in data:
                cell[key] = data[key]
        if data["msgs_per_s"]:
            # Server CPU per echo: the server's CPU time over the whole client run (connect,
            # warmup, measurement, close) ÷ the echoes it made in warmup + measurement
            # (estimated from the measured rate). Much less sensitive than msgs/s to
            # other jobs on the machine, which delay the server but do not add to its CPU time.
            echoes = data["msgs_per_s"] * (args.warmup + data["duration_s"])
            cell["server_us_per_msg"] = round(cell["server_cpu_s"] / echoes * 1e6, 2)
            cell["server_user_us_per_msg"] = round(user_s / echoes * 1e6, 2)
            if data.get("client_cpu"):
                # The client's CPU per echo, over the measured window only (both clients
                # report their CPU there, in cores): as steady as the server's figure.
                cell["client_us_per_msg"] = round(data["client_cpu"] / data["msgs_per_s"] * 1e6, 2)
        if not data["messages"]:
            cell["error"] = "no echo"
        elif cell["errors"]:
            cell["error"] = f"{cell['errors']} errors"
    else:
        cell.setdefault("error", f"client exit {proc.returncode}")
    if "error" in cell:
        cell["stderr"] = err.decode(errors="replace")[-2000:]
    return cell


# -- report -----------------------------------------------------------------------------


CLIENT_BOUND = 0.95
"""A client using this much of its core (``client_cpu``) sets the rate itself."""


def fmt_size(size: int) -> str:
    for unit, scale in (("MiB", MiB), ("KiB", KiB)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"


def parse_sizes(text: str) -> list[int]:
    sizes = []
    for part in text.split(","):
        part = part.strip().lower()
        scale = 1
        for suffix, factor in (("kib", KiB), ("mib", MiB), ("k", KiB), ("m", MiB), ("b", 1)):
            if part.endswith(suffix):
                part, scale = part[: -len(suffix)], factor
                break
        sizes.append(int(float(part) * scale))
    return sizes


def fmt_rate(value: Optional[float]) -> str:
    if value is None:
        return "fail"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}"


def index(cells: list[dict]) -> dict[tuple, dict]:
    return {(c["loop"], c["client"], c["mode"], c["size"], c["server"]): c for c in cells}


def ratio(cells: dict, loop: str, client: str, mode: str, size: int, server: str) -> Optional[float]:
    c, ref = cells.get((loop, client, mode, size, server)), cells.get((loop, client, mode, size, REFERENCE))
    if not c or not ref or not c["msgs_per_s"] or not ref["msgs_per_s"]:
        return None
    return c["msgs_per_s"] / ref["msgs_per_s"]


def run_ratios(cells: dict, loop: str, client: str, mode: str, size: int, server: str) -> list[float]:
    """The ratio to the picows server run by run (``--repeat``): run i of a
    server against run i of picows, measured next to each other."""
    c, ref = cells.get((loop, client, mode, size, server)), cells.get((loop, client, mode, size, REFERENCE))
    if not c or not ref:
        return []
    return [mine / theirs for mine, theirs in zip(c.get("runs", []), ref.get("runs", [])) if mine and theirs]


def geomean(values: list[float]) -> Optional[float]:
    values = [v for v in values if v]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def server_rows(plan: dict) -> Iterator[tuple[tuple[str, str, str, int], list[str]]]:
    """The rows of the server tables, in order: each (loop, client, mode, size)
    with the start of its row (``rt``/``pipe``, the size written out)."""
    for loop in plan["loops"]:
        for client in plan["clients"]:
            for mode in plan["modes"]:
                for size in plan["sizes"]:
                    yield (
                        (loop, client, mode, size),
                        [loop, client, "rt" if mode == "roundtrip" else "pipe", fmt_size(size)],
                    )


def markdown(meta: dict, cells: list[dict], plan: dict) -> str:
    ix = index(cells)
    servers, loops, clients, modes, sizes = (
        plan["servers"],
        plan["loops"],
        plan["clients"],
        plan["modes"],
        plan["sizes"],
    )
    out = ["# fastws end-to-end echo benchmark", ""]
    out.append(f"- command: `{meta['command']}`")
    out.append(f"- date: {meta['date']}")
    out.append(f"- machine: {meta['cpu']}, {meta['cores']} cores; {meta['platform']}")
    out.append(f"- Python {meta['python']}; " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    out.append(
        f"- each cell: {meta['warmup']} s warmup, then {meta['duration']} s measured; 1 connection; "
        f"pipelined window {meta['window']}; binary messages; "
        + (f"best of {meta['repeat']} interleaved runs; " if meta["repeat"] > 1 else "")
        + f"pinning: {meta['pinning']}"
    )
    out.append(
        f"- glibc allocator, every server and client: `GLIBC_TUNABLES={meta['malloc']}`"
        if meta.get("malloc")
        else "- glibc allocator: its defaults (--glibc-defaults)"
    )
    out.append(f"- load from other processes: {meta['load']}")
    out.append("")
    out.append("## Servers: echoes per second (ratio to the picows server, same client, loop, mode and size)")
    out.append("")
    out.append(
        "Rows: event loop of server and client (Node runs on libuv either way), client "
        "(`picows` = the picows reference client, `fastws` = `fastws bench`), mode (rt = round trip, "
        f"pipe = {meta['window']} in flight), message size. Columns: "
        + "; ".join(f"{SPEC[s].short} = {SPEC[s].label}" for s in servers if SPEC[s].short != SPEC[s].label)
        + f". † the client used ≥ {CLIENT_BOUND:.0%} of its core: there the client, not the server, "
        "sets the rate, and a faster server's ratio is understated (see the CPU tables)."
    )
    out.append("")
    head = ["loop", "client", "mode", "size"] + [SPEC[s].short for s in servers]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * 4 + "---:|" * len(servers))
    for (loop, client, mode, size), row in server_rows(plan):
        for server in servers:
            c = ix.get((loop, client, mode, size, server))
            if c is None:
                row.append("")
                continue
            r = ratio(ix, loop, client, mode, size, server)
            bound = " †" if (c.get("client_cpu") or 0) >= CLIENT_BOUND else ""
            row.append(fmt_rate(c["msgs_per_s"]) + (f" ({r:.2f})" if r is not None else "") + bound)
        out.append("| " + " | ".join(row) + " |")
    out.append("")

    out.append("## Summary: geometric mean of the ratio to picows over sizes and modes")
    out.append("")
    combos = [(loop, client) for loop in loops for client in clients]
    out.append("| server | " + " | ".join(f"{lo} / {cl} client" for lo, cl in combos) + " |")
    out.append("|---|" + "---:|" * len(combos))
    for server in servers:
        row = [SPEC[server].label]
        for loop, client in combos:
            g = geomean([ratio(ix, loop, client, m, s, server) or 0 for m in modes for s in sizes])
            row.append(f"{g:.2f}" if g else "")
        out.append("| " + " | ".join(row) + " |")
    out.append("")

    if meta["repeat"] > 1:
        out.append("## Run by run: the lowest and the median ratio to picows")
        out.append("")
        out.append(
            f"The table above keeps each server's best of {meta['repeat']} runs. Here run i of each server "
            "is divided by run i of the picows server, measured next to it: the lowest of those ratios "
            "is what a server holds in every run, the median what it holds in a typical one."
            + (
                " `picows ctl` is a second picows server: its lowest ratio is how far one run of two "
                "identical servers can fall apart here, the floor under which a lowest ratio says "
                "nothing about a server."
                if "picows-control" in servers
                else ""
            )
        )
        out.append("")
        others = [s for s in servers if s != REFERENCE]
        out.append(
            "| loop | client | mode | size | " + " | ".join(f"{SPEC[s].short}: lowest, median" for s in others) + " |"
        )
        out.append("|" + "---|" * 4 + "---:|" * len(others))
        for (loop, client, mode, size), row in server_rows(plan):
            for server in others:
                rs = run_ratios(ix, loop, client, mode, size, server)
                row.append(f"{min(rs):.2f}, {statistics.median(rs):.2f}" if rs else "")
            out.append("| " + " | ".join(row) + " |")
        out.append("")

    if "picows" in clients:
        cpu_tables = [
            (
                "server_us_per_msg",
                "## Server CPU time per echo, µs (ratio to picows; lower is cheaper)",
                "The server process's CPU time during a cell ÷ the echoes it made; "
                "less disturbed by other jobs than echoes/s. Measured with the picows client.",
            ),
            (
                "server_user_us_per_msg",
                "## Of which user space, µs per echo (ratio to picows)",
                "The same, user time only: the interpreter, the loop and the library, without the "
                "kernel's part (system calls, wake-ups; fewer calls where a server batches its writes). "
                "The kernel counts it by 10 ms tick: a cell of a few thousand echoes is good to ~10%.",
            ),
        ]
        for key, title, text in cpu_tables:
            out.append(title)
            out.append("")
            out.append(text)
            out.append("")
            out.append("| loop | mode | size | " + " | ".join(SPEC[s].short for s in servers) + " |")
            out.append("|---|---|---|" + "---:|" * len(servers))
            for loop in loops:
                for mode in modes:
                    for size in sizes:
                        row = [loop, "rt" if mode == "roundtrip" else "pipe", fmt_size(size)]
                        ref = ix.get((loop, "picows", mode, size, REFERENCE), {}).get(key)
                        for server in servers:
                            us = ix.get((loop, "picows", mode, size, server), {}).get(key)
                            if not us:
                                row.append("")
                                continue
                            row.append(f"{us:,.1f}" + (f" ({us / ref:.2f})" if ref else ""))
                        out.append("| " + " | ".join(row) + " |")
            out.append("")

    if "fastws" in clients and "picows" in clients:

        def clients_table(against: str, entry: Callable[[dict, dict], str]) -> None:
            """A row per loop and mode, a column per size: ``entry(fastws bench's cell,
            the picows client's cell)``, both against the server ``against``."""
            out.append("| loop | mode | " + " | ".join(fmt_size(s) for s in sizes) + " |")
            out.append("|---|---|" + "---:|" * len(sizes))
            for loop in loops:
                for mode in modes:
                    row = [loop, "rt" if mode == "roundtrip" else "pipe"]
                    for size in sizes:
                        f = ix.get((loop, "fastws", mode, size, against))
                        p = ix.get((loop, "picows", mode, size, against))
                        row.append(entry(f, p) if f and p else "")
                    out.append("| " + " | ".join(row) + " |")
            out.append("")

        def rates(f: dict, p: dict) -> str:
            if not (f["msgs_per_s"] and p["msgs_per_s"]):
                return ""
            cpu = ""
            if f.get("client_cpu") is not None and p.get("client_cpu") is not None:
                cpu = f"; CPU {f['client_cpu']:.0%} vs {p['client_cpu']:.0%}"
            return (
                f"{f['msgs_per_s'] / p['msgs_per_s']:.2f} "
                f"({fmt_rate(f['msgs_per_s'])} vs {fmt_rate(p['msgs_per_s'])}{cpu})"
            )

        def cpu_per_echo(f: dict, p: dict) -> str:
            f_us, p_us = f.get("client_us_per_msg"), p.get("client_us_per_msg")
            return f"{f_us:,.1f} ({f_us / p_us:.2f}) vs {p_us:,.1f}" if f_us and p_us else ""

        for against in [key for key in (REFERENCE, "fastws-callback") if key in servers]:
            out.append(f"## Clients: `fastws bench` ÷ picows client, both against the {against} server")
            out.append("")
            out.append(
                "Beside each rate, each client's own CPU while measuring, in cores: near 100% the client,"
                " not the server, sets the rate."
            )
            out.append("")
            clients_table(against, rates)
            out.append(f"### Client CPU time per echo, µs, against the {against} server")
            out.append("")
            out.append(
                "Each client's CPU time while measuring ÷ its echoes: `fastws bench` (ratio to the"
                " picows client; lower is cheaper) vs the picows client. A round trip leaves both"
                " clients idle half the time, so this, not echoes/s, shows which client costs more."
            )
            out.append("")
            clients_table(against, cpu_per_echo)

    failed = [c for c in cells if c.get("error")]
    noisy = [c for c in cells if (c.get("other_load") or 0) >= 0.5]
    if noisy:
        out.append(
            f"{len(noisy)} of {len(cells)} cells ran while other processes kept ≥ 0.5 core busy "
            "(`other_load` in the JSON): treat small differences with care."
        )
        out.append("")
    if failed:
        out.append("## Failures")
        out.append("")
        for c in failed:
            out.append(
                f"- {SPEC[c['server']].label}, {c['client']} client, {c['loop']}, {c['mode']}, "
                f"{fmt_size(c['size'])}: {c['error']}"
            )
        out.append("")
    return "\n".join(out)


def plot(cells: list[dict], plan: dict, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ix = index(cells)
    servers, loops, clients, modes, sizes = (
        plan["servers"],
        plan["loops"],
        plan["clients"],
        plan["modes"],
        plan["sizes"],
    )
    groups = [(m, s) for m in modes for s in sizes]
    figure, axes = plt.subplots(
        len(loops), len(clients), figsize=(7.5 * len(clients), 4.2 * len(loops)), squeeze=False, sharey=True
    )
    width = 0.8 / len(servers)
    colors = plt.get_cmap("tab10")
    for i, loop in enumerate(loops):
        for j, client in enumerate(clients):
            ax = axes[i][j]
            for k, server in enumerate(servers):
                xs, ys = [], []
                for g, (mode, size) in enumerate(groups):
                    r = ratio(ix, loop, client, mode, size, server)
                    if r:
                        xs.append(g - 0.4 + width * (k + 0.5))
                        ys.append(r)
                ax.bar(xs, ys, width, label=SPEC[server].label, color=colors(k % 10))
            ax.axhline(1.0, color="black", linewidth=0.8)
            ax.set_yscale("log")
            ax.set_xticks(range(len(groups)))
            ax.set_xticklabels(
                [f"{'rt' if m == 'roundtrip' else 'pipe'}\n{fmt_size(s)}" for m, s in groups], fontsize=8
            )
            ax.set_title(f"{loop} loop, {client} client", fontsize=10)
            ax.grid(True, axis="y", which="both", alpha=0.3)
            if j == 0:
                ax.set_ylabel("echoes/s ÷ picows server")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(servers), 4), fontsize=9)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout(rect=(0, 0.08, 1, 0.96))
    figure.savefig(path, dpi=100)
    plt.close(figure)


# -- main ------------------------------------------------------------------------------


def machine(args, pinning: Pinning) -> dict:
    cpu = cpu_model()
    versions = {d: _version(d) for d in ("pyfastws", "picows", "aiofastnet", "aiohttp", "websockets", "uvloop")}
    try:
        versions["node"] = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        versions["node"] = "not installed"
    try:
        with open(os.path.join(NODE_DIR, "node_modules", "ws", "package.json")) as f:
            versions["ws"] = json.load(f)["version"]
        with open(os.path.join(NODE_DIR, "node_modules", "bufferutil", "package.json")) as f:
            versions["bufferutil"] = json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        versions["ws"] = "not installed"
    command = shlex.join(["python", os.path.relpath(os.path.abspath(__file__))] + sys.argv[1:])
    if os.environ.get("FASTWS_BENCH_COMMAND"):  # set by run_all.sh
        command = f"{os.environ['FASTWS_BENCH_COMMAND']}` → `{command}"
    return {
        "command": command,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": _cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "warmup": args.warmup,
        "duration": args.duration,
        "window": args.window,
        "repeat": args.repeat,
        "pinning": pinning.describe(),
        "malloc": args.malloc,
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "picows-client":
        return picows_client_main(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: sizes 256 B and 1 MiB, 0.1 s warmup, 0.25 s")
    ap.add_argument("--duration", type=float, help="seconds measured per cell (default 1.5, --quick 0.25)")
    ap.add_argument("--warmup", type=float, help="seconds of load before measuring (default 0.3, --quick 0.1)")
    ap.add_argument("--window", type=int, default=16, help="messages in flight in pipelined mode (16)")
    ap.add_argument(
        "--repeat", type=int, default=1, help="measure every cell N times, interleaved, and keep the best (1)"
    )
    ap.add_argument("--sizes", help="comma-separated sizes, e.g. 256,8k,100k,1m (default: all four)")
    ap.add_argument("--servers", help="comma-separated subset of: " + ",".join(SPEC))
    ap.add_argument("--clients", help="comma-separated subset of: " + ",".join(CLIENTS))
    ap.add_argument("--loops", help="comma-separated subset of: " + ",".join(LOOPS))
    ap.add_argument("--modes", help="comma-separated subset of: " + ",".join(MODES))
    ap.add_argument("--no-pin", action="store_true", help="do not pin servers and clients to separate CPUs")
    ap.add_argument(
        "--glibc-defaults",
        action="store_true",
        help="run every process on glibc's default allocator settings, not the fastws command's (see malloc_setting)",
    )
    ap.add_argument(
        "--json",
        nargs="?",
        const=os.path.join(RESULTS_DIR, "echo.json"),
        metavar="FILE",
        help="save the raw numbers (default file bench/results/echo.json)",
    )
    ap.add_argument("--plot", default=os.path.join(RESULTS_DIR, "echo.png"), metavar="FILE.png", help="chart")
    ap.add_argument("--no-plot", action="store_true", help="no chart")
    ap.add_argument("--start-timeout", type=float, default=30.0, help="seconds a server may take to accept (30)")
    args = ap.parse_args()

    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    args.malloc = malloc_setting(args.glibc_defaults)
    if args.duration is None:
        args.duration = 0.25 if args.quick else 1.5
    if args.warmup is None:
        args.warmup = 0.1 if args.quick else 0.3

    plan = {
        "servers": pick_list(ap, args.servers, list(SPEC), [k for k in SPEC if k != "picows-control"]),
        "clients": pick_list(ap, args.clients, CLIENTS, CLIENTS),
        "loops": pick_list(ap, args.loops, LOOPS, LOOPS),
        "modes": pick_list(ap, args.modes, MODES, MODES),
        "sizes": parse_sizes(args.sizes) if args.sizes else list(QUICK_SIZES if args.quick else SIZES),
    }
    if "node-ws" in plan["servers"] and not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "ws")):
        print(
            "bench_echo: bench/node/node_modules missing (run `npm ci` in bench/node): Node ws skipped", file=sys.stderr
        )
        plan["servers"].remove("node-ws")
    if "uvloop" in plan["loops"] and _version("uvloop") == "not installed":
        print("bench_echo: uvloop not installed: uvloop runs skipped", file=sys.stderr)
        plan["loops"].remove("uvloop")

    pinning = Pinning(not args.no_pin)
    meta = machine(args, pinning)
    atexit.register(_kill_all)
    signal.signal(signal.SIGTERM, _on_signal)
    os.makedirs(RESULTS_DIR, exist_ok=True)
    logdir = tempfile.mkdtemp(prefix="fastws-bench-echo-")

    total = len(plan["loops"]) * len(plan["clients"]) * len(plan["modes"]) * len(plan["sizes"])
    total *= len(plan["servers"]) * args.repeat
    print(f"bench_echo: {total} cells, server logs in {logdir}", file=sys.stderr)
    cells: list[dict] = []
    run_load = RunLoad()
    done = 0
    try:
        for loop in plan["loops"]:
            servers: dict[str, ServerProcess] = {}
            try:
                for key in plan["servers"]:
                    server = ServerProcess(SPEC[key], loop, pinning, logdir, args.start_timeout, args.malloc)
                    server.start()
                    servers[key] = server
                for size in plan["sizes"]:
                    for mode in plan["modes"]:
                        for client in plan["clients"]:
                            best: dict[str, dict] = {}
                            for key in [k for _ in range(args.repeat) for k in plan["servers"]]:
                                server = servers[key]
                                done += 1
                                if not server.alive():
                                    print(f"bench_echo: {key} ({loop}) died; restarting", file=sys.stderr)
                                    print(server.log_tail(), file=sys.stderr)
                                    server.start()
                                cell = run_cell(server, client, size, mode, loop, args, pinning)
                                previous = best.get(key)
                                cell["runs"] = (previous["runs"] if previous else []) + [cell["msgs_per_s"]]
                                if previous is None or (cell["msgs_per_s"] or 0) > (previous["msgs_per_s"] or 0):
                                    best[key] = cell
                                else:
                                    previous["runs"] = cell["runs"]
                                note = f"  ERROR {cell['error']}" if cell.get("error") else ""
                                print(
                                    f"[{done}/{total} {run_load.elapsed:5.0f}s] {loop:7} {client:6} "
                                    f"{mode:9} {fmt_size(size):>7} {key:16} {fmt_rate(cell['msgs_per_s']):>10} msg/s"
                                    f"  other load {cell.get('other_load', 0):.2f}{note}",
                                    file=sys.stderr,
                                    flush=True,
                                )
                                if cell.get("error") and cell.get("stderr"):
                                    print(cell["stderr"], file=sys.stderr)
                            cells.extend(best[key] for key in plan["servers"] if key in best)
            finally:
                for server in servers.values():
                    server.stop()
    except KeyboardInterrupt:
        print("bench_echo: interrupted; reporting what was measured", file=sys.stderr)
    finally:
        _kill_all()
    meta["load"] = run_load.describe(meta["cores"])
    meta["wall_s"] = round(run_load.elapsed, 1)

    report = markdown(meta, cells, plan)
    print(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "plan": plan, "quick": args.quick, "cells": cells}, f, indent=1)
        print(f"bench_echo: raw numbers in {args.json}", file=sys.stderr)
    if not args.no_plot and cells:
        try:
            plot(cells, plan, args.plot, f"fastws echo benchmark, {meta['date'][:10]}: echoes/s ÷ picows server")
            print(f"bench_echo: chart in {args.plot}", file=sys.stderr)
        except ImportError:
            print("bench_echo: matplotlib not installed: no chart", file=sys.stderr)
    return 1 if any(c.get("error") for c in cells) else 0


if __name__ == "__main__":
    sys.exit(main())
