#!/usr/bin/env python
"""permessage-deflate benchmark: echoes/s and bytes on the wire, deflate on and off.

    python bench/bench_compression.py            # full run, ~3 min
    python bench/bench_compression.py --quick    # ~25 s, rougher numbers
    python bench/bench_compression.py --json out.json

One connection, round trip (one text message in flight), against fastws,
websockets and aiohttp echo servers, each in its own process, with the
`websockets` client for all of them. The payloads are JSON documents of 1, 64
and 128 KiB (lists of records with repeated keys, made with random.Random(seed),
a different document per message) and, as in Autobahn's compression cases
(12.*), consecutive slices of Goethe's Faust I (the text file those cases send,
from kosoku's copy of the Autobahn test data; the "text" sizes). Bytes on the wire are counted by a small TCP
proxy inside this process (a separate connection from the timed one). A second
table times zlib against the zlib-ng and isal drop-ins, in process, when they
are importable. Markdown goes to stdout, progress to stderr. See bench/README.md.

Internal: ``bench_compression.py --serve NAME --deflate on|off`` runs one server
on a free port and prints ``PORT n`` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import random
import selectors
import shlex
import signal
import socket
import subprocess
import sys
import time
import zlib
from typing import Any, NamedTuple, Optional

from _procs import LIVE as _LIVE
from _procs import busy_s as _busy_s
from _procs import cpu_model  # noqa: E402
from _procs import kill as _kill
from _procs import kill_all as _kill_all
from _procs import on_signal as _on_signal
from _procs import proc_cpu_s as _proc_cpu_s
from _procs import self_cpu_s as _self_cpu_s
from _procs import version as _version

KiB = 1024
SERVERS = ("fastws", "websockets", "aiohttp")


class Payload(NamedTuple):
    """What one row sends: JSON documents or slices of a text, of ``size`` characters."""

    kind: str  # "JSON" or "text"
    size: int


SIZES = {
    "1k": Payload("JSON", KiB),
    "64k": Payload("JSON", 64 * KiB),
    "128k": Payload("JSON", 128 * KiB),
    "text-1k": Payload("text", KiB),
    "text-64k": Payload("text", 64 * KiB),
    "text-128k": Payload("text", 128 * KiB),
}
SEED = 7692  # RFC 7692
# Distinct messages per size: the pool (cycled) spans far more than any LZ77
# window (32 KiB at most), so no message is ever found again in the window.
POOL = {KiB: 512, 64 * KiB: 40, 128 * KiB: 20}
# Bytes-on-the-wire phase: messages sent before counting (the window fills up),
# then messages counted. Always the same messages, from pool index 0.
WIRE_WARMUP = {KiB: 32, 64 * KiB: 4, 128 * KiB: 2}
WIRE_COUNT = {KiB: 256, 64 * KiB: 32, 128 * KiB: 16}
REFERENCE = ("websockets", True)  # every ratio is to websockets with deflate on
HERE = os.path.dirname(os.path.abspath(__file__))


# -- payloads -----------------------------------------------------------------------

_WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
    "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee "
    "zulu order invoice payment refund shipment warehouse customer account balance "
    "pending settled failed review approved rejected express standard priority bulk "
    "north south east west central region store online mobile desktop tablet api "
    "red green blue black white silver gold small medium large xl premium basic"
).split()
_FIRST = "anna ben chloe david emma felix grace henry iris jack kate leo mia noah olga paul".split()
_LAST = "smith jones brown taylor wilson davies evans thomas roberts walker wright green".split()
_STATUS = ("pending", "paid", "shipped", "delivered", "cancelled", "refunded")
_CURRENCY = ("EUR", "USD", "GBP", "JPY", "CHF")


def _record(rng: random.Random, rid: int) -> dict:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    return {
        "id": rid,
        "uuid": f"{rng.getrandbits(128):032x}",
        "user": f"{first}.{last}{rng.randrange(100)}",
        "email": f"{first}.{last}@{rng.choice(('example.com', 'mail.test', 'corp.example'))}",
        "created_at": f"2024-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T"
        f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z",
        "amount": round(rng.uniform(0, 10_000), 2),
        "currency": rng.choice(_CURRENCY),
        "status": rng.choice(_STATUS),
        "score": round(rng.random(), 4),
        "active": rng.random() < 0.7,
        "tags": rng.sample(_WORDS, rng.randrange(1, 5)),
        "note": " ".join(rng.choices(_WORDS, k=rng.randrange(2, 10))),
    }


def make_message(rng: random.Random, size: int, seq: int) -> str:
    """A JSON document of exactly ``size`` bytes (ASCII): ``{"seq", "items": [records], "cursor"}``,
    the cursor (random words) filling what the whole records leave."""
    items: list[dict] = []
    rid = seq * 1000
    length = len(json.dumps({"seq": seq, "items": [], "cursor": ""}, separators=(",", ":")))
    while True:
        record = _record(rng, rid)
        extra = len(json.dumps(record, separators=(",", ":"))) + (1 if items else 0)
        if length + extra > size - 16:
            break
        items.append(record)
        length += extra
        rid += 1
    doc = {"seq": seq, "items": items, "cursor": ""}
    room = size - len(json.dumps(doc, separators=(",", ":")))
    words = []
    while len(" ".join(words)) < room:
        words.append(rng.choice(_WORDS))
    doc["cursor"] = " ".join(words)[:room]
    text = json.dumps(doc, separators=(",", ":"))
    assert len(text) == size, (len(text), size)
    return text


def faust() -> str:
    """Goethe's Faust I as Autobahn's compression cases send it (kosoku ships the file)."""
    import importlib.util

    spec = importlib.util.find_spec("kosoku")
    if spec is None or spec.origin is None:
        raise RuntimeError("the text payloads need kosoku (tests/interop/install-peers.sh installs it)")
    path = os.path.join(os.path.dirname(spec.origin), "shim", "autobahntestsuite", "testdata", "pg2229.txt")
    with open(path, encoding="utf-8") as f:
        return f.read()


def make_pool(payload: Payload) -> list[str]:
    """POOL[size] distinct messages: JSON documents, or consecutive slices of the
    text (wrapping around), as Autobahn's 12.* cases walk through their file."""
    count = POOL[payload.size]
    if payload.kind == "text":
        text = faust()
        doubled = text + text
        return [doubled[(i * payload.size) % len(text) :][: payload.size] for i in range(count)]
    rng = random.Random(f"{SEED}-{payload.size}")
    return [make_message(rng, payload.size, seq) for seq in range(count)]


# -- servers (run with --serve, in their own process) ------------------------------------


async def _serve_fastws(deflate: bool):
    import fastws
    from fastws.extensions import PerMessageDeflate

    async def echo(ws):
        async for m in ws:
            await ws.send(m)

    server = await fastws.serve(
        echo,
        "127.0.0.1",
        0,
        compression=PerMessageDeflate() if deflate else None,
        max_message_size=None,
        ping_interval=None,
    )
    return server.port, server.close


async def _serve_websockets(deflate: bool):
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    async def echo(ws):
        try:
            async for m in ws:
                await ws.send(m)
        except ConnectionClosed:
            pass

    server = await serve(
        echo, "127.0.0.1", 0, compression="deflate" if deflate else None, max_size=None, ping_interval=None
    )

    async def stop():
        server.close()
        await server.wait_closed()

    return server.sockets[0].getsockname()[1], stop


async def _serve_aiohttp(deflate: bool):
    from aiohttp import WSMsgType, web

    async def echo(request):
        ws = web.WebSocketResponse(compress=deflate, max_msg_size=0, heartbeat=None)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/", echo)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock)
    await site.start()
    return sock.getsockname()[1], runner.cleanup


def serve_main(name: str, deflate: bool) -> int:
    starters = {"fastws": _serve_fastws, "websockets": _serve_websockets, "aiohttp": _serve_aiohttp}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        port, stop = await starters[name](deflate)
        print(f"PORT {port}", flush=True)
        await done.wait()
        try:
            await asyncio.wait_for(stop(), 2)
        except Exception:  # shutting down: a slow close must not keep the process around
            pass

    asyncio.run(main())
    return 0


# -- processes ----------------------------------------------------------------------------


class Server:
    def __init__(self, name: str, deflate: bool, cpu: Optional[int], timeout: float) -> None:
        self.name, self.deflate, self.cpu, self.timeout = name, deflate, cpu, timeout
        self.proc: Optional[subprocess.Popen] = None
        self.port = 0

    @property
    def label(self) -> str:
        return f"{self.name} deflate {'on' if self.deflate else 'off'}"

    def start(self) -> None:
        cmd = [sys.executable, os.path.abspath(__file__), "--serve", self.name]
        cmd += ["--deflate", "on" if self.deflate else "off"]
        cpu = self.cpu
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=None,  # a server's tracebacks show up on our stderr
            cwd=HERE,
            start_new_session=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None,
        )
        _LIVE[self.proc.pid] = self.proc
        os.set_blocking(self.proc.stdout.fileno(), False)
        deadline = time.monotonic() + self.timeout
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"{self.label}: no port within {self.timeout:.0f} s")
                if sel.select(min(left, 0.2)):
                    chunk = self.proc.stdout.read()
                    if chunk:
                        buf += chunk
        line = buf.split(b"\n", 1)[0].decode()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"{self.label}: unexpected output {line!r}")
        self.port = int(line.split()[1])
        self._wait_accepting(deadline)

    def _wait_accepting(self, deadline: float) -> None:
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"{self.label}: port {self.port} never accepted") from None
                time.sleep(0.05)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu_s(self) -> float:
        return _proc_cpu_s(self.proc.pid) if self.alive() else 0.0

    def stop(self) -> None:
        if self.proc is not None:
            _kill(self.proc)
            if self.proc.stdout:
                self.proc.stdout.close()
            self.proc = None


# -- byte-counting proxy -----------------------------------------------------------------------


class CountingProxy:
    """Listens on a free port and forwards each connection to ``port``, counting
    the TCP payload bytes each way (frames + handshake; no TCP/IP headers)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.c2s = 0
        self.s2c = 0
        self.server: Optional[asyncio.base_events.Server] = None
        self.tasks: set[asyncio.Task] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        try:
            sreader, swriter = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 5)
        except (OSError, asyncio.TimeoutError):
            cwriter.close()
            return

        async def pump(reader, writer, c2s: bool) -> None:
            try:
                while True:
                    data = await reader.read(1 << 16)
                    if not data:
                        break
                    if c2s:
                        self.c2s += len(data)
                    else:
                        self.s2c += len(data)
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        await asyncio.gather(pump(creader, swriter, True), pump(sreader, cwriter, False))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            try:
                await asyncio.wait_for(self.server.wait_closed(), 2)
            except asyncio.TimeoutError:
                pass


# -- client (websockets, the same for every server) ---------------------------------------------


def _connect(port: int, deflate: bool):
    from websockets.asyncio.client import connect

    return connect(
        f"ws://127.0.0.1:{port}/",
        compression="deflate" if deflate else None,
        max_size=None,
        ping_interval=None,
        open_timeout=10,
        close_timeout=2,
    )


async def measure_wire(server: Server, pool: list[str], size: Payload, timeout: float) -> dict:
    """Bytes per message each way, through the counting proxy, on a fresh connection."""
    proxy = CountingProxy(server.port)
    port = await proxy.start()
    try:
        async with _connect(port, server.deflate) as ws:
            header = ws.response.headers.get("Sec-WebSocket-Extensions")
            warm, count = WIRE_WARMUP[size.size], WIRE_COUNT[size.size]
            for i in range(warm):
                await ws.send(pool[i % len(pool)])
                if await asyncio.wait_for(ws.recv(), timeout) != pool[i % len(pool)]:
                    raise RuntimeError(f"{server.label}: wrong echo")
            c2s0, s2c0 = proxy.c2s, proxy.s2c
            for i in range(warm, warm + count):
                await ws.send(pool[i % len(pool)])
                if await asyncio.wait_for(ws.recv(), timeout) != pool[i % len(pool)]:
                    raise RuntimeError(f"{server.label}: wrong echo")
            c2s, s2c = proxy.c2s - c2s0, proxy.s2c - s2c0
    finally:
        await proxy.close()
    return {"header": header, "c2s": c2s / count, "s2c": s2c / count, "count": count}


async def measure_rate(server: Server, pool: list[str], warmup: float, duration: float, timeout: float) -> dict:
    """Round trips per second on a direct connection, and the server's CPU time per echo."""
    async with _connect(server.port, server.deflate) as ws:
        n = len(pool)
        i = 0
        end = time.monotonic() + warmup
        while time.monotonic() < end:
            await ws.send(pool[i % n])
            await asyncio.wait_for(ws.recv(), timeout)
            i += 1
        busy0, self0, srv0 = _busy_s(), _self_cpu_s(), server.cpu_s()
        t0 = time.monotonic()
        end = t0 + duration
        count = 0
        while True:
            m = pool[i % n]
            await ws.send(m)
            if await asyncio.wait_for(ws.recv(), timeout) != m:
                raise RuntimeError(f"{server.label}: wrong echo")
            i += 1
            count += 1
            if count % 8 == 0 and time.monotonic() >= end:
                break
        wall = time.monotonic() - t0
        srv = max(0.0, server.cpu_s() - srv0)
        mine = _self_cpu_s() - self0
        busy1 = _busy_s()
    other = None
    if busy0 is not None and busy1 is not None:
        other = max(0.0, (busy1 - busy0) - srv - mine) / wall
    return {
        "rate": count / wall,
        "server_us": srv / count * 1e6,
        "client_us": mine / count * 1e6,
        "other_load": other,
        "count": count,
    }


# -- zlib drop-ins (in process) -------------------------------------------------------------------


def _zlib_libs() -> list[tuple[str, Any, list[int]]]:
    libs: list[tuple[str, Any, list[int]]] = [(f"zlib {zlib.ZLIB_RUNTIME_VERSION}", zlib, [6, 1])]
    try:
        from zlib_ng import zlib_ng

        libs.append((f"zlib-ng {_version('zlib-ng')}", zlib_ng, [6, 1]))
    except ImportError:
        pass
    try:
        from isal import isal_zlib

        libs.append((f"isal {_version('isal')}", isal_zlib, [1, 3]))  # ISA-L has levels 0..3 only (2 is its default)
    except ImportError:
        pass
    return libs


def zlib_table(pools: dict[Payload, list[str]], runs: int, min_time: float, wbits: int, mem_level: int) -> list[dict]:
    """Compress the pool with one compressobj and Z_SYNC_FLUSH per message (context
    takeover, as permessage-deflate does), then decompress that stream with one
    decompressobj. Best of ``runs`` timings of at least ``min_time`` each."""
    rows = []
    for size, pool in pools.items():
        data = [m.encode() for m in pool]
        total = sum(map(len, data))
        for name, lib, levels in _zlib_libs():
            for level in levels:

                def compress_pass(lib=lib, level=level, data=data) -> list[bytes]:
                    c = lib.compressobj(level, lib.DEFLATED, -wbits, mem_level)
                    return [c.compress(d) + c.flush(lib.Z_SYNC_FLUSH) for d in data]

                def decompress_pass(chunks: list[bytes], lib=lib) -> None:
                    d = lib.decompressobj(-wbits)
                    for chunk in chunks:
                        d.decompress(chunk)

                chunks = compress_pass()
                out = sum(map(len, chunks))
                check = lib.decompressobj(-wbits)
                if b"".join(check.decompress(c) for c in chunks) != b"".join(data):
                    raise RuntimeError(f"{name}: round trip failed")
                # A peer inflates with its own zlib at the negotiated window: the
                # drop-in's output must stay within 2^wbits for that to work.
                try:
                    peer = zlib.decompressobj(-wbits)
                    stdlib_ok = b"".join(peer.decompress(c) for c in chunks) == b"".join(data)
                except zlib.error:
                    stdlib_ok = False
                best_c = best_d = float("inf")
                for _ in range(runs):
                    t0, passes = time.perf_counter(), 0
                    while True:
                        compress_pass()
                        passes += 1
                        el = time.perf_counter() - t0
                        if el >= min_time:
                            break
                    best_c = min(best_c, el / passes)
                    t0, passes = time.perf_counter(), 0
                    while True:
                        decompress_pass(chunks)
                        passes += 1
                        el = time.perf_counter() - t0
                        if el >= min_time:
                            break
                    best_d = min(best_d, el / passes)
                rows.append(
                    {
                        "size": size,
                        "lib": name,
                        "level": level,
                        "compress_mbs": total / best_c / 1e6,
                        "decompress_mbs": total / best_d / 1e6,
                        "ratio": total / out,
                        "stdlib_inflates": stdlib_ok,
                    }
                )
    return rows


# -- report ---------------------------------------------------------------------------------------


def machine(args) -> dict:
    cpu = cpu_model()
    command = shlex.join(["python", os.path.relpath(os.path.abspath(__file__))] + sys.argv[1:])
    if os.environ.get("PYTHONPATH"):
        command = f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} {command}"
    return {
        "command": command,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "versions": {d: _version(d) for d in ("pyfastws", "websockets", "aiohttp")},
        "zlib": zlib.ZLIB_RUNTIME_VERSION,
        "warmup": args.warmup,
        "duration": args.duration,
        "repeat": args.repeat,
    }


def _ratio(x: Optional[float], ref: Optional[float]) -> str:
    if x is None or not ref:
        return "n/a"
    return f"{x / ref:.2f}×"


def _size_label(payload: Payload) -> str:
    size = f"{payload.size // KiB} KiB" if payload.size >= KiB else f"{payload.size} B"
    return f"{size} {payload.kind}"


def report(info: dict, cells: dict, headers: dict, zrows: list[dict], args) -> str:
    out = [
        "# permessage-deflate: echo over one connection, deflate on and off",
        "",
        f"- command: `{info['command']}`",
        f"- date: {info['date']}",
        f"- machine: {info['cpu']}, {info['cores']} cores, {info['platform']}",
        f"- Python: {info['python']}; "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items())
        + f"; zlib {info['zlib']}",
        f'- client: `websockets` asyncio client (`compression="deflate"` / `None`), round trip, '
        f"{args.warmup:g} s warmup + {args.duration:g} s timed, best of {args.repeat}; "
        f"server pinned to CPU {args.server_cpu}, client to CPU {args.client_cpu}"
        if args.server_cpu is not None
        else f"- client: `websockets` asyncio client, round trip, {args.warmup:g} s warmup + "
        f"{args.duration:g} s timed, best of {args.repeat}; no CPU pinning",
    ]
    loads = [c["other_load"] for c in cells.values() if c.get("other_load") is not None]
    if loads:
        out.append(
            f"- other processes' load during the timed cells: mean {sum(loads) / len(loads):.2f}, "
            f"max {max(loads):.2f} cores (above ~0.3 the msg/s figures are noisy; CPU µs/msg less so)"
        )
    out += [
        "",
        "Ratios (×) are to websockets with deflate on, same size. B/msg = TCP payload bytes per "
        'message (frame headers included); "saved" = deflate-off bytes ÷ deflate-on bytes, same server.',
        "",
        "| payload | server | deflate | msg/s | × | server CPU µs/msg | × | c→s B/msg | × | s→c B/msg | × "
        "| saved c→s | saved s→c |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for size in args.size_list:
        ref = cells.get((REFERENCE[0], REFERENCE[1], size), {})
        for name in args.server_list:
            for deflate in (True, False):
                c = cells.get((name, deflate, size))
                if c is None:
                    continue
                if c.get("error"):
                    out.append(
                        f"| {_size_label(size)} | {name} | {'on' if deflate else 'off'} | error: {c['error']} "
                        "| | | | | | | | | |"
                    )
                    continue
                off = cells.get((name, False, size), {})
                saved_c = _ratio(off.get("c2s"), c.get("c2s")) if deflate else ""
                saved_s = _ratio(off.get("s2c"), c.get("s2c")) if deflate else ""
                out.append(
                    f"| {_size_label(size)} | {name} | {'on' if deflate else 'off'} "
                    f"| {c['rate']:,.0f} | {_ratio(c['rate'], ref.get('rate'))} "
                    f"| {c['server_us']:.1f} | {_ratio(c['server_us'], ref.get('server_us'))} "
                    f"| {c['c2s']:,.0f} | {_ratio(c['c2s'], ref.get('c2s'))} "
                    f"| {c['s2c']:,.0f} | {_ratio(c['s2c'], ref.get('s2c'))} "
                    f"| {saved_c} | {saved_s} |"
                )
    out += [
        "",
        "Negotiated (the server's `Sec-WebSocket-Extensions` response header; the client offers "
        "websockets' default `permessage-deflate; client_max_window_bits`):",
        "",
        "| server | deflate on | deflate off |",
        "|---|---|---|",
    ]
    for name in args.server_list:
        cols = []
        for deflate in (True, False):
            if (name, deflate) not in headers:
                cols.append("n/a")
            else:
                h = headers[(name, deflate)]
                cols.append(f"`{h}`" if h else "(no header: uncompressed)")
        out.append(f"| {name} | {cols[0]} | {cols[1]} |")
    if zrows:
        out += [
            "",
            f"zlib drop-ins, in process (not wired into fastws): one compressobj per stream, "
            f"`Z_SYNC_FLUSH` per message (context takeover), raw deflate, window 2^{args.zlib_wbits}, "
            f"memLevel {args.zlib_mem_level} (fastws' defaults); the same payloads; MB/s of text in "
            f"(compress) or out (decompress); × = ÷ zlib level 6; ratio = text bytes ÷ compressed bytes.",
            "",
            "| payload | library | level | compress MB/s | × | decompress MB/s | × | ratio | stdlib zlib inflates it |",
            "|---|---|--:|--:|--:|--:|--:|--:|---|",
        ]
        for size in args.size_list:
            rows = [r for r in zrows if r["size"] == size]
            base = next((r for r in rows if r["lib"].startswith("zlib ") and r["level"] == 6), None)
            for r in rows:
                out.append(
                    f"| {_size_label(size)} | {r['lib']} | {r['level']} | {r['compress_mbs']:.0f} "
                    f"| {_ratio(r['compress_mbs'], base and base['compress_mbs'])} | {r['decompress_mbs']:.0f} "
                    f"| {_ratio(r['decompress_mbs'], base and base['decompress_mbs'])} | {r['ratio']:.2f} "
                    f"| {'yes' if r['stdlib_inflates'] else '**no**'} |"
                )
    elif not args.no_zlib:
        out += [
            "",
            "zlib drop-ins: neither `zlib-ng` nor `isal` is importable; `pip install zlib-ng isal` for that table.",
        ]
    return "\n".join(out) + "\n"


# -- main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short run: 0.3 s warmup, 1 s timed, 1 repeat")
    p.add_argument("--warmup", type=float, help="seconds of echo before timing (1.0; quick 0.3)")
    p.add_argument("--duration", type=float, help="timed seconds per cell (3.0; quick 1.0)")
    p.add_argument("--repeat", type=int, help="timed runs per cell, interleaved, best kept (2; quick 1)")
    p.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset of " + ",".join(SERVERS))
    p.add_argument("--sizes", default=",".join(SIZES), help="comma-separated subset of " + ",".join(SIZES))
    p.add_argument("--start-timeout", type=float, default=20.0, help="seconds a server may take to listen")
    p.add_argument("--no-pin", action="store_true", help="do not pin the server and client to separate CPUs")
    p.add_argument("--no-zlib", action="store_true", help="skip the zlib drop-in table")
    p.add_argument("--zlib-wbits", type=int, default=11)
    p.add_argument("--zlib-mem-level", type=int, default=3)
    p.add_argument("--json", metavar="FILE", help="also write the raw numbers to FILE")
    p.add_argument("--serve", choices=SERVERS, help=argparse.SUPPRESS)
    p.add_argument("--deflate", choices=("on", "off"), default="on", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        return args
    args.warmup = args.warmup if args.warmup is not None else (0.3 if args.quick else 1.0)
    args.duration = args.duration if args.duration is not None else (1.0 if args.quick else 3.0)
    args.repeat = args.repeat if args.repeat is not None else (1 if args.quick else 2)
    args.server_list = [s for s in args.servers.split(",") if s]
    for s in args.server_list:
        if s not in SERVERS:
            p.error(f"unknown server {s!r}")
    try:
        args.size_list = [SIZES[s] for s in args.sizes.split(",") if s]
    except KeyError as e:
        p.error(f"unknown size {e}")
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not args.no_pin and len(cpus) >= 2:
        args.server_cpu, args.client_cpu = cpus[0], cpus[1]
    else:
        args.server_cpu = args.client_cpu = None
    return args


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def run(args, pools: dict[Payload, list[str]]) -> tuple[dict, dict]:
    cells: dict = {}
    headers: dict = {}
    servers = [Server(n, d, args.server_cpu, args.start_timeout) for n in args.server_list for d in (True, False)]
    try:
        for s in servers:  # all started up front: idle servers cost nothing
            try:
                s.start()
                log(f"started {s.label} on port {s.port}")
            except Exception as e:  # reported in its rows; the other servers go on
                log(f"{s.label}: {e}")
                for size in args.size_list:
                    cells[(s.name, s.deflate, size)] = {"error": f"start failed: {e}"[:120]}
        for s in servers:
            for size in args.size_list:
                key = (s.name, s.deflate, size)
                if key in cells:
                    continue
                try:
                    w = await asyncio.wait_for(measure_wire(s, pools[size], size, 30), 120)
                    cells[key] = {"c2s": w["c2s"], "s2c": w["s2c"], "wire_count": w["count"]}
                    headers[(s.name, s.deflate)] = w["header"]
                except Exception as e:  # one failing server must not lose the others' numbers
                    cells[key] = {"error": f"{type(e).__name__}: {e}"[:120]}
                    log(f"{s.label} {_size_label(size)}: wire phase failed: {e!r}")
        for rep in range(args.repeat):
            for size in args.size_list:
                for s in servers:
                    key = (s.name, s.deflate, size)
                    if cells[key].get("error"):
                        continue
                    try:
                        if not s.alive():
                            log(f"{s.label} died; restarting")
                            s.stop()
                            s.start()
                        r = await asyncio.wait_for(
                            measure_rate(s, pools[size], args.warmup, args.duration, 30),
                            args.warmup + args.duration + 60,
                        )
                    except Exception as e:
                        cells[key]["error"] = f"{type(e).__name__}: {e}"[:120]
                        log(f"{s.label} {_size_label(size)}: timed phase failed: {e!r}")
                        continue
                    c = cells[key]
                    c.setdefault("runs", []).append(r)
                    c["rate"] = max(x["rate"] for x in c["runs"])
                    c["server_us"] = min(x["server_us"] for x in c["runs"])
                    c["client_us"] = min(x["client_us"] for x in c["runs"])
                    loads = [x["other_load"] for x in c["runs"] if x["other_load"] is not None]
                    c["other_load"] = min(loads) if loads else None
                    log(
                        f"[{rep + 1}/{args.repeat}] {_size_label(size):>6} {s.label:<22} "
                        f"{r['rate']:9,.0f} msg/s  server {r['server_us']:7.1f} µs/msg  "
                        f"other load {r['other_load'] or 0:.2f}"
                    )
    finally:
        for s in servers:
            s.stop()
    return cells, headers


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.serve:
        return serve_main(args.serve, args.deflate == "on")
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    info = machine(args)
    t0 = time.monotonic()
    pools = {size: make_pool(size) for size in args.size_list}
    log("payload pools: " + ", ".join(f"{len(p)} × {_size_label(s)}" for s, p in pools.items()))
    if args.client_cpu is not None:
        os.sched_setaffinity(0, {args.client_cpu})
    try:
        cells, headers = asyncio.run(run(args, pools))
    except KeyboardInterrupt:
        return 130
    finally:
        _kill_all()
    zrows: list[dict] = []
    if not args.no_zlib:
        log("timing zlib drop-ins")
        zrows = zlib_table(
            pools, 1 if args.quick else 3, 0.1 if args.quick else 0.3, args.zlib_wbits, args.zlib_mem_level
        )
    sys.stdout.write(report(info, cells, headers, zrows, args))
    log(f"done in {time.monotonic() - t0:.0f} s")
    if args.json:
        raw = {
            "machine": info,
            "cells": [{"server": n, "deflate": d, "payload": _size_label(s), **c} for (n, d, s), c in cells.items()],
            "negotiated": [{"server": n, "deflate": d, "header": h} for (n, d), h in headers.items()],
            "zlib": [{**row, "size": _size_label(row["size"])} for row in zrows],
        }
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    finally:
        _kill_all()
