"""fastws echo servers in their own process, with counters (used by test_scale.py and test_soak.py).

``ServerProcess`` runs a server with the async handler API and one with the
Listener API in a subprocess, so its RSS is its own.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

# The server process: a fastws echo server with the async handler API and one
# with the Listener API, on 127.0.0.1, driven by lines on stdin:
#   stats -> one JSON line: open connections per server, pending tasks, live
#            WebSocket objects, RSS and peak RSS (KiB, Linux), logged errors
#   quit  -> close both servers gracefully, then exit
SERVER_SCRIPT = r"""
import asyncio, gc, json, logging, os, sys
import fastws
from fastws import Listener, serve
from fastws.asyncio.protocol import WebSocket

options = json.loads(sys.argv[1])
errors = []

class Collect(logging.Handler):
    def emit(self, record):
        errors.append(f"{record.name}: {record.getMessage()[:300]}")

logging.getLogger().addHandler(Collect(logging.ERROR))

def proc_status(field):
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None

async def echo(ws):
    async for message in ws:
        await ws.send(message)

class Echo(Listener):
    def on_message(self, ws, message):
        ws.send_nowait(message)

async def main():
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(
        lambda loop, context: errors.append(
            f"loop: {context.get('message')} {context.get('exception')!r} {context.get('future', '')!r:.300}"
        )
    )
    compression = {} if options.pop("compression") else {"compression": None}
    handler_server = await serve(echo, "127.0.0.1", 0, backlog=1024, **compression, **options)
    listener_server = await serve(None, "127.0.0.1", 0, listener=Echo, backlog=1024, **compression, **options)
    servers = [handler_server, listener_server]
    me = asyncio.current_task()
    done = loop.create_future()
    buffer = bytearray()

    def stats():
        gc.collect()
        tasks = [task for task in asyncio.all_tasks() if task is not me]
        return {
            "open": [len(server.connections) for server in servers],
            "tasks": len(tasks),
            "task_samples": [repr(task.get_coro())[:120] for task in tasks[:3]],
            "websockets": sum(isinstance(obj, WebSocket) for obj in gc.get_objects()),
            "rss_kib": proc_status("VmRSS"),
            "peak_rss_kib": proc_status("VmHWM"),
            "errors": len(errors),
            "error_samples": errors[:5],
            "backend": fastws.codec.BACKEND,
        }

    def on_stdin():
        data = os.read(0, 4096)
        if not data:
            loop.remove_reader(0)
            done.done() or done.set_result(None)
            return
        buffer.extend(data)
        while b"\n" in buffer:
            line, _, rest = bytes(buffer).partition(b"\n")
            buffer[:] = rest
            if line.strip() == b"stats":
                sys.stdout.write(json.dumps(stats()) + "\n")
                sys.stdout.flush()
            elif line.strip() == b"quit":
                done.done() or done.set_result(None)

    loop.add_reader(0, on_stdin)
    print("PORTS", handler_server.port, listener_server.port, flush=True)
    await done
    loop.remove_reader(0)
    for server in servers:
        await server.close()

asyncio.run(main())
"""


class ServerProcess:
    """The fastws echo servers (handler API, Listener API) in a subprocess."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("compression", False)
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER_SCRIPT, json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("PORTS "):
            self.process.kill()
            raise RuntimeError(f"server process did not start: {line!r}")
        self.handler_port, self.listener_port = map(int, line.split()[1:])
        self.ports = {"handler": self.handler_port, "listener": self.listener_port}

    def uri(self, api: str = "handler") -> str:
        return f"ws://127.0.0.1:{self.ports[api]}/"

    def _stats(self) -> dict:
        self.process.stdin.write("stats\n")  # type: ignore[union-attr]
        self.process.stdin.flush()  # type: ignore[union-attr]
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"server process exited ({self.process.poll()})")
        return json.loads(line)

    async def stats(self) -> dict:
        """Counters from the server process (after a gc.collect() there)."""
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.run_in_executor(None, self._stats), 30)

    async def wait_idle(self, timeout: float = 15.0) -> dict:
        """Wait (bounded) until the server has no connection and no task left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            stats = await self.stats()
            if not any(stats["open"]) and stats["tasks"] == 0 and stats["websockets"] == 0:
                return stats
            if loop.time() > deadline:
                return stats
            await asyncio.sleep(0.1)

    def stop(self) -> int:
        """Close the servers gracefully; return the exit code."""
        try:
            self.process.stdin.write("quit\n")  # type: ignore[union-attr]
            self.process.stdin.close()  # type: ignore[union-attr]
            return self.process.wait(30)
        except (OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()
            return -9
