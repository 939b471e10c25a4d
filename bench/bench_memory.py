#!/usr/bin/env python
"""Memory per idle WebSocket connection: fastws against websockets, picows, aiohttp.

    python bench/bench_memory.py                 # N = 10,000 connections per server (~1-2 min)
    python bench/bench_memory.py --quick         # N = 1,000
    python bench/bench_memory.py -n 5000 --only fastws,websockets --loop uvloop --json out.json

Each server runs alone in its own subprocess (``--serve NAME``, an echo server on
127.0.0.1). This process is the client: a bare asyncio Protocol that does the
handshake and the framing itself, so no WebSocket library's client memory is
involved and nothing of it is counted (it is another process anyway).

Per server: start it; open and drop 100 warm-up connections (so one-time costs
such as lazy imports and allocator pools are not charged to the connections);
``gc.collect()`` in the server and read its RSS (VmRSS in /proc/PID/status);
open N connections, each doing the handshake and exchanging one small text
message (compression runs send it compressed, so the server's inflate and
deflate states exist, as on a real connection that has been used once); let them
sit idle; ``gc.collect()``; read the RSS again. KiB per connection is
(RSS after - RSS before) / N. Kernel socket buffers are not in RSS and not counted.

The ``-tls`` servers listen for ``wss://`` (a throwaway CA from trustme, made
by this process; the certificate files reach the server subprocess through
``FASTWS_BENCH_CERTS``); this process's own TLS memory is not counted either.

The compression runs offer ``permessage-deflate; client_max_window_bits``, as
browsers do; the servers answer with their own defaults (fastws and websockets:
4 KiB windows, memLevel 5, context takeover; aiohttp: zlib defaults).

N is capped by RLIMIT_NOFILE: the soft limit is raised to the hard limit, and
if that is still too low N is lowered (and the output says so). Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import gc
import json
import os
import platform
import struct
import subprocess
import sys
import time
import zlib
from typing import Callable, Optional

from _procs import cpu_model  # noqa: E402
from fastws._fdlimit import raise_fd_limit

KiB = 1024
HOST = "127.0.0.1"
WARMUP = 100
CONCURRENCY = 100  # handshakes in flight at once (listen backlogs are >= this)
FD_MARGIN = 64  # descriptors kept for everything else

# name -> (library, API, permessage-deflate)
SERVERS: dict[str, tuple[str, str, bool]] = {
    "fastws": ("fastws", "async handler", False),
    "fastws-deflate": ("fastws", "async handler", True),
    "fastws-listener": ("fastws", "Listener callbacks", False),
    "fastws-listener-deflate": ("fastws", "Listener callbacks", True),
    "fastws-tls": ("fastws", "async handler", False),
    "websockets": ("websockets", "asyncio server", False),
    "websockets-deflate": ("websockets", "asyncio server", True),
    "websockets-tls": ("websockets", "asyncio server", False),
    "picows": ("picows", "WSListener", False),
    "aiohttp": ("aiohttp", "web.WebSocketResponse", False),
    "aiohttp-deflate": ("aiohttp", "web.WebSocketResponse", True),
}


def is_tls(name: str) -> bool:
    return name.endswith("-tls")


def make_certificates(directory: str) -> None:
    """A CA and a certificate for 127.0.0.1, as PEM files in ``directory``."""
    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(os.path.join(directory, "ca.pem"))
    ca.issue_cert(HOST).private_key_and_cert_chain_pem.write_to_path(os.path.join(directory, "server.pem"))


def ping_options() -> dict:
    """The servers' keepalive interval: their own defaults unless --ping-interval was given."""
    interval = os.environ.get("FASTWS_BENCH_PING_INTERVAL")
    return {} if interval is None else {"ping_interval": float(interval)}


def tls_context(server_side: bool):
    import ssl

    directory = os.environ["FASTWS_BENCH_CERTS"]
    if server_side:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(os.path.join(directory, "server.pem"))
    else:
        context = ssl.create_default_context(cafile=os.path.join(directory, "ca.pem"))
    return context


# -- server side (the subprocess) ---------------------------------------------------


def rss_kib(pid: str = "self") -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/PID/status")


def heap_kib() -> Optional[float]:
    """The C heap in use (glibc's mallinfo2) in KiB; None elsewhere. Unlike RSS
    it falls when memory is freed in the middle of the heap, which the
    allocator keeps for the next allocations."""
    from fastws._allocator import heap_usage

    usage = heap_usage()
    return None if usage is None else usage.in_use / 1024


async def start_fastws(compression: bool, listener: bool, tls: bool) -> tuple[int, Callable[[], int]]:
    from fastws import Listener, serve
    from fastws.extensions.permessage_deflate import SERVER_DEFAULT

    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    class Echo(Listener):
        def on_message(self, ws, message):
            ws.send_nowait(message)

    options = dict(
        compression=SERVER_DEFAULT if compression else None,
        backlog=1024,
        ssl=tls_context(True) if tls else None,
        **ping_options(),
    )
    if listener:
        server = await serve(None, HOST, 0, listener=Echo, **options)
    else:
        server = await serve(echo, HOST, 0, **options)
    return server.port, lambda: len(server.connections)


async def start_websockets(compression: bool, tls: bool) -> tuple[int, Callable[[], int]]:
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    async def echo(ws):
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass  # the warm-up connections are dropped without a close frame

    ssl = tls_context(True) if tls else None
    compression_option = "deflate" if compression else None
    server = await serve(echo, HOST, 0, compression=compression_option, backlog=1024, ssl=ssl, **ping_options())
    return server.sockets[0].getsockname()[1], lambda: len(server.connections)


async def start_picows() -> tuple[int, Callable[[], int]]:
    from picows import WSListener, WSMsgType, ws_create_server

    count = [0]

    class Echo(WSListener):
        def on_ws_connected(self, transport):
            count[0] += 1

        def on_ws_disconnected(self, transport):
            count[0] -= 1

        def on_ws_frame(self, transport, frame):
            if frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
            elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
                transport.send(frame.msg_type, frame.get_payload_as_bytes())

    server = await ws_create_server(lambda request: Echo(), HOST, 0, backlog=1024)
    return server.sockets[0].getsockname()[1], lambda: count[0]


async def start_aiohttp(compression: bool) -> tuple[int, Callable[[], int]]:
    from aiohttp import WSMsgType, web

    count = [0]

    async def handler(request):
        ws = web.WebSocketResponse(compress=compression)
        await ws.prepare(request)
        count[0] += 1
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await ws.send_str(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await ws.send_bytes(msg.data)
        finally:
            count[0] -= 1
        return ws

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0, backlog=1024)
    await site.start()
    return runner.addresses[0][1], lambda: count[0]


async def start(name: str) -> tuple[int, Callable[[], int]]:
    library, api, compression = SERVERS[name]
    if library == "fastws":
        return await start_fastws(compression, listener=api.startswith("Listener"), tls=is_tls(name))
    if library == "websockets":
        return await start_websockets(compression, tls=is_tls(name))
    if library == "picows":
        return await start_picows()
    return await start_aiohttp(compression)


async def serve_main(name: str) -> None:
    """Run one server; answer ``stats`` / ``quit`` lines on stdin."""
    loop = asyncio.get_running_loop()
    port, count = await start(name)
    done = loop.create_future()
    buffer = bytearray()

    def on_stdin() -> None:
        data = os.read(0, 4096)
        if not data:
            loop.remove_reader(0)
            if not done.done():
                done.set_result(None)
            return
        buffer.extend(data)
        while b"\n" in buffer:
            line, _, rest = bytes(buffer).partition(b"\n")
            buffer[:] = rest
            command = line.strip().decode()
            if command == "stats":
                gc.collect()
                reply = {"open": count(), "rss_kib": rss_kib(), "heap_kib": heap_kib()}
                sys.stdout.write(json.dumps(reply) + "\n")
                sys.stdout.flush()
            elif command == "quit" and not done.done():
                done.set_result(None)

    loop.add_reader(0, on_stdin)
    sys.stdout.write(f"PORT {port}\n")
    sys.stdout.flush()
    await done
    # No graceful shutdown: closing thousands of connections one by one would
    # only slow the benchmark down (and warn about pending handler tasks).
    sys.stdout.flush()
    os._exit(0)


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(main, kind: str):
    loop = new_event_loop(kind)
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()


# -- client side (this process) ------------------------------------------------------


def mask_frame(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    """One masked client frame (payloads here are small: < 126 bytes)."""
    assert len(payload) < 126
    key = os.urandom(4)
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return bytes((0x80 | (0x40 if rsv1 else 0) | opcode, 0x80 | len(payload))) + key + masked


class RawClient(asyncio.Protocol):
    """Handshake, one message, then idle: answers pings, notices closes."""

    def __init__(self, request: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.request = request
        self.transport: Optional[asyncio.Transport] = None
        self.buffer = bytearray()
        self.head: Optional[bytes] = None
        self.opened = loop.create_future()
        self.message = loop.create_future()  # (rsv1, opcode, payload) of the first data frame
        self.lost = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.head is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self.head = bytes(self.buffer[: end + 4])
            del self.buffer[: end + 4]
            if not self.opened.done():
                self.opened.set_result(self.head)
        while len(self.buffer) >= 2:
            first, second = self.buffer[0], self.buffer[1]
            length, start = second & 0x7F, 2
            if length == 126:
                if len(self.buffer) < 4:
                    return
                length, start = struct.unpack_from("!H", self.buffer, 2)[0], 4
            elif length == 127:
                if len(self.buffer) < 10:
                    return
                length, start = struct.unpack_from("!Q", self.buffer, 2)[0], 10
            if len(self.buffer) < start + length:
                return
            payload = bytes(self.buffer[start : start + length])
            del self.buffer[: start + length]
            opcode = first & 0x0F
            if opcode == 9:  # ping -> pong
                self.transport.write(mask_frame(10, payload))
            elif opcode == 8:
                self.transport.close()
            elif opcode in (1, 2) and not self.message.done():
                self.message.set_result((bool(first & 0x40), opcode, payload))

    def connection_lost(self, exc) -> None:
        self.lost = True
        for future in (self.opened, self.message):
            if not future.done():
                future.set_exception(ConnectionError("connection lost"))


def upgrade_request(port: int, deflate: bool) -> bytes:
    lines = [
        "GET / HTTP/1.1",
        f"Host: {HOST}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
        "Sec-WebSocket-Version: 13",
    ]
    if deflate:
        lines.append("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def negotiated_client_bits(head: bytes) -> Optional[int]:
    """The client window from the response's permessage-deflate, or None if not accepted."""
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "sec-websocket-extensions" and "permessage-deflate" in value:
            bits = 15
            for param in value.split(";")[1:]:
                key, _, raw = param.strip().partition("=")
                if key == "client_max_window_bits" and raw:
                    bits = int(raw.strip('"'))
            return bits
    return None


async def open_one(port: int, deflate: bool, index: int, stats: dict, ssl=None) -> Optional[RawClient]:
    loop = asyncio.get_running_loop()
    try:
        _, client = await loop.create_connection(
            lambda: RawClient(upgrade_request(port, deflate)),
            HOST,
            port,
            ssl=ssl,
            server_hostname=HOST if ssl else None,
        )
        head = await asyncio.wait_for(client.opened, 20)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode("latin-1"))
        text = f"idle connection {index:08d}".encode()
        bits = negotiated_client_bits(head) if deflate else None
        if bits is not None:
            stats["deflate"] += 1
            encoder = zlib.compressobj(6, zlib.DEFLATED, -max(bits, 9))
            data = encoder.compress(text) + encoder.flush(zlib.Z_SYNC_FLUSH)
            client.transport.write(mask_frame(1, data[:-4], rsv1=True))
        else:
            client.transport.write(mask_frame(1, text))
        rsv1, opcode, payload = await asyncio.wait_for(client.message, 20)
        if rsv1:
            payload = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
        if opcode != 1 or payload != text:
            raise ValueError(f"bad echo {payload!r}")
        return client
    except (OSError, asyncio.TimeoutError, ValueError) as exc:
        stats["failed"] += 1
        stats.setdefault("error", repr(exc))
        return None


async def open_many(port: int, deflate: bool, count: int, stats: dict, ssl=None) -> list[RawClient]:
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def bounded(index: int) -> Optional[RawClient]:
        async with semaphore:
            return await open_one(port, deflate, index, stats, ssl)

    results = await asyncio.gather(*(bounded(i) for i in range(count)))
    return [client for client in results if client is not None]


class ServerProcess:
    def __init__(self, name: str, loop_kind: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--serve", name, "--loop", loop_kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.process.kill()
            raise RuntimeError(f"{name} server did not start: {line!r}")
        self.port = int(line.split()[1])

    def stats(self) -> dict:
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    async def stats_async(self) -> dict:
        return await asyncio.get_running_loop().run_in_executor(None, self.stats)

    def stop(self) -> None:
        try:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
            self.process.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()


async def measure(name: str, count: int, loop_kind: str, idle: float) -> dict:
    deflate = SERVERS[name][2]
    ssl = tls_context(False) if is_tls(name) else None
    server = ServerProcess(name, loop_kind)
    started = time.perf_counter()
    stats = {"failed": 0, "deflate": 0}
    clients: list[RawClient] = []
    try:
        warm = await open_many(server.port, deflate, WARMUP, stats, ssl)
        for client in warm:
            client.transport.abort()
        for _ in range(100):  # up to 5 s for the server to notice
            if (await server.stats_async())["open"] == 0:
                break
            await asyncio.sleep(0.05)
        stats = {"failed": 0, "deflate": 0}
        before = await server.stats_async()
        clients = await open_many(server.port, deflate, count, stats, ssl)
        await asyncio.sleep(idle)
        after = await server.stats_async()
        alive = sum(not client.lost for client in clients)
    finally:
        for client in clients:
            if client.transport is not None:
                client.transport.abort()
        server.stop()
    opened = len(clients)
    return {
        "server": name,
        "library": SERVERS[name][0],
        "api": SERVERS[name][1],
        "deflate": deflate,
        "tls": is_tls(name),
        "connections": opened,
        "deflate_negotiated": stats["deflate"],
        "failed": stats["failed"],
        "error": stats.get("error"),
        "alive_at_end": alive,
        "server_open_at_end": after["open"],
        "rss_before_kib": before["rss_kib"],
        "rss_after_kib": after["rss_kib"],
        "kib_per_connection": (after["rss_kib"] - before["rss_kib"]) / opened if opened else float("nan"),
        "heap_kib_per_connection": (after["heap_kib"] - before["heap_kib"]) / opened
        if opened and after["heap_kib"] is not None
        else float("nan"),
        "seconds": time.perf_counter() - started,
    }


def available(name: str) -> bool:
    library = SERVERS[name][0] if name in SERVERS else name
    try:
        __import__(library)
    except ImportError:
        return False
    return True


def versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    for module in ("fastws", "websockets", "picows", "aiohttp", "uvloop"):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        version = getattr(mod, "__version__", None)
        if version is None:
            try:
                from importlib.metadata import version as dist_version

                version = dist_version(module)
            except Exception:
                version = "?"
        parts.append(f"{module} {version}")
    try:
        from fastws import codec

        parts.append(f"fastws codec {codec.BACKEND}")
    except (ImportError, AttributeError):
        pass
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--connections", type=int, default=None, help="connections per server (10000)")
    parser.add_argument("--quick", action="store_true", help="1000 connections per server")
    parser.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(SERVERS)}")
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio", help="the servers' event loop")
    parser.add_argument("--json", metavar="FILE", help="also save the raw numbers")
    parser.add_argument("--idle", type=float, default=1.0, help="seconds the connections sit idle before measuring")
    parser.add_argument(
        "--ping-interval",
        type=float,
        default=None,
        help="the fastws and websockets servers' keepalive interval (default: their own, 20 s); fastws releases"
        " a compressor idle for a whole interval",
    )
    parser.add_argument("--serve", metavar="NAME", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.ping_interval is not None:
        os.environ["FASTWS_BENCH_PING_INTERVAL"] = str(args.ping_interval)
    if args.serve:
        run(serve_main(args.serve), args.loop)
        return
    if not os.path.exists("/proc/self/status"):
        sys.exit("bench_memory.py reads RSS from /proc: Linux only")

    wanted = args.connections or (1000 if args.quick else 10_000)
    soft, hard = raise_fd_limit(wanted + FD_MARGIN)
    count = min(wanted, soft - FD_MARGIN)
    notes = []
    if count < wanted:
        notes.append(
            f"N lowered from {wanted} to {count}: RLIMIT_NOFILE is {soft} (hard {hard}); "
            "raise it (ulimit -n) for the full run."
        )
    names = [name.strip() for name in args.only.split(",") if name.strip()] or list(SERVERS)
    for name in names:
        if name not in SERVERS:
            sys.exit(f"unknown server {name!r}; choose from {', '.join(SERVERS)}")
    skipped = [name for name in names if not available(name)]
    names = [name for name in names if name not in skipped]
    if skipped:
        notes.append(f"not installed, skipped: {', '.join(skipped)}")

    if any(is_tls(name) for name in names) and "FASTWS_BENCH_CERTS" not in os.environ:
        import tempfile

        os.environ["FASTWS_BENCH_CERTS"] = tempfile.mkdtemp(prefix="fastws-bench-certs-")
        make_certificates(os.environ["FASTWS_BENCH_CERTS"])
    results = []
    for name in names:
        print(f"{name}: {count} connections ...", end="", file=sys.stderr, flush=True)
        result = run(measure(name, count, args.loop, args.idle), "uvloop" if available("uvloop") else "asyncio")
        print(f" {result['kib_per_connection']:.1f} KiB/conn ({result['seconds']:.1f} s)", file=sys.stderr)
        results.append(result)

    reference = {
        (r["deflate"], r["tls"]): r["kib_per_connection"] for r in results if r["server"].startswith("websockets")
    }
    command = " ".join(["python", "bench/bench_memory.py", *sys.argv[1:]])
    print("# Memory per idle connection\n")
    print(f"- machine: {cpu_model()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}")
    print(f"- {versions()}; servers on {args.loop}")
    print(f"- date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"- command: `{command}`")
    pings = "their default keepalive" if args.ping_interval is None else f"keepalive every {args.ping_interval:g} s"
    print(
        f"- N = {count} connections per server, each used for one small text message, then idle {args.idle:g} s"
        f" ({pings})"
    )
    for note in notes:
        print(f"- note: {note}")
    print()
    print(
        "| server | API | TLS | permessage-deflate | KiB per connection | ÷ websockets (same TLS and compression)"
        " | C heap in use, KiB per connection |"
    )
    print("|---|---|---|---|---:|---:|---:|")
    for r in results:
        ref = reference.get((r["deflate"], r["tls"]))
        ratio = f"{r['kib_per_connection'] / ref:.2f}×" if ref else "n/a"
        deflate = "—"
        if r["deflate"]:
            deflate = "on" if r["deflate_negotiated"] == r["connections"] else f"offered, {r['deflate_negotiated']}"
        tls = "wss://" if r["tls"] else "—"
        heap = r["heap_kib_per_connection"]
        print(
            f"| {r['library']} | {r['api']} | {tls} | {deflate} | {r['kib_per_connection']:.1f} | {ratio}"
            f" | {heap:.1f} |"
        )
    problems = [
        r
        for r in results
        if r["failed"] or r["alive_at_end"] != r["connections"] or r["server_open_at_end"] != r["connections"]
    ]
    for r in problems:
        print(
            f"\n**{r['server']}**: {r['failed']} connections failed ({r['error']}); "
            f"{r['alive_at_end']} of {r['connections']} still open at the end, "
            f"server counted {r['server_open_at_end']}."
        )
    print(
        "\nRSS of the server process (VmRSS) after the N connections minus before them, ÷ N; "
        "kernel socket buffers are not included. C heap in use: glibc's mallinfo2 (bytes allocated and not"
        " freed, Python's own small-object arenas excluded) after minus before, ÷ N: memory freed while the"
        " connections sit idle shows here, not in RSS, and serves the next allocations."
    )
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"command": command, "connections": count, "notes": notes, "results": results}, out, indent=2)


if __name__ == "__main__":
    main()
