"""Helpers shared by the interop tests against real peers: the websockets
library, Node's ws and headless Chromium.

A missing peer is an error, not a skip: run tests/interop/install-peers.sh.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Optional

from websockets.asyncio.client import connect as websockets_connect

from fastws.exceptions import ConnectionClosed

INTEROP_DIR = Path(__file__).resolve().parent
NODE_DIR = INTEROP_DIR / "node"
INSTALL_HINT = "run `bash tests/interop/install-peers.sh` (as root) to install the interop peers"

TIMEOUT = 10.0  # seconds for one step: a message, a handshake, a process start
LARGE_TIMEOUT = 30.0  # for the 1 MiB messages

# -- payloads ---------------------------------------------------------------

MIB = 1 << 20
FRAGMENTED_SIZE = 262145  # 256 KiB + 1: more than Chromium's ~128 KiB frames, odd on purpose


def pattern_bytes(size: int) -> bytes:
    """Deterministic, non-repeating-looking bytes; JS computes the same with
    ``Math.imul(i, 2654435761) >>> 24``."""
    return bytes(((i * 2654435761) & 0xFFFFFFFF) >> 24 for i in range(size))


def multibyte_text(size: int = MIB) -> str:
    """A string of exactly ``size`` UTF-8 bytes mixing 2-, 3- and 4-byte code points."""
    unit = "é€😀a"  # 2 + 3 + 4 + 1 = 10 bytes
    text = unit * (size // 10)
    return text + "a" * (size - len(text.encode()))


LARGE_BINARY = pattern_bytes(FRAGMENTED_SIZE)
LARGE_TEXT = multibyte_text()
CLOSE_REASON = "bye é €"
MANY = 1000


def many_messages(count: int = MANY) -> list:
    """Small text and binary messages, alternating, each one distinct."""
    return [f"message {i} é" if i % 2 == 0 else i.to_bytes(4, "big") for i in range(count)]


async def recv(ws, timeout: float = TIMEOUT):
    """``ws.recv()`` with a deadline (works for fastws and websockets connections)."""
    return await asyncio.wait_for(ws.recv(), timeout)


# -- fastws side ------------------------------------------------------------


def stop_process_group(process: subprocess.Popen, timeout: float) -> None:
    """Stop a peer started with start_new_session=True: TERM, then KILL, its
    whole process group (Node workers, Chromium's zygotes and renderers)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            break
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(process.pid, signal.SIGKILL)  # stragglers that outlive the leader
    except (ProcessLookupError, PermissionError):
        pass
    process.wait(timeout)


class Acceptor:
    """A fastws server handler that hands each connection to the test and keeps
    it open until it is closed."""

    def __init__(self) -> None:
        self._accepted: asyncio.Queue = asyncio.Queue()

    async def __call__(self, ws) -> None:
        self._accepted.put_nowait(ws)
        await ws.wait_closed()

    async def accept(self, timeout: float = TIMEOUT):
        return await asyncio.wait_for(self._accepted.get(), timeout)


class RecordingEcho:
    """A fastws server handler that echoes and records what it received and
    how the connection was closed (for one connection at a time)."""

    def __init__(self) -> None:
        self.received: list = []
        self.connection: Any = None
        self.connected = asyncio.Event()
        self.finished = asyncio.Event()
        self.close: Optional[tuple[int, str]] = None

    async def __call__(self, ws) -> None:
        self.connection = ws
        self.connected.set()
        try:
            async for message in ws:
                self.received.append(message)
                await ws.send(message)
        except ConnectionClosed:
            pass
        await ws.wait_closed()
        self.close = (ws.close_code, ws.close_reason)
        self.finished.set()

    async def wait_finished(self, timeout: float = TIMEOUT) -> tuple[int, str]:
        await asyncio.wait_for(self.finished.wait(), timeout)
        assert self.close is not None
        return self.close


# -- child processes --------------------------------------------------------


class PeerProcess:
    """A peer program run as a child process, which exits when its stdin closes.
    A thread collects its stdout lines; stderr goes to a temporary file, quoted
    in errors."""

    def __init__(self, name: str, args: list, cwd: Path) -> None:
        self.name = name
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            args,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            start_new_session=True,  # its own process group, killed as a whole
        )
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read_stdout, name=f"{name}-stdout", daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.decode("utf-8", "replace").rstrip("\n"))
        self._lines.put(None)  # end of output

    def stderr_text(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode("utf-8", "replace")[-2000:]

    def next_line(self, timeout: float = TIMEOUT) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{self.name}: no output within {timeout}s; stderr: {self.stderr_text()}") from None
        if line is None:
            self._lines.put(None)  # stay at the end for later calls
            self.process.wait(TIMEOUT)
            raise RuntimeError(f"{self.name} exited with code {self.process.returncode}; stderr: {self.stderr_text()}")
        return line

    def wait_line(self, pattern: str, timeout: float = TIMEOUT) -> re.Match:
        """The first line must match ``pattern`` (a start-up line such as ``listening PORT``)."""
        line = self.next_line(timeout)
        match = re.fullmatch(pattern, line)
        if match is None:
            raise RuntimeError(f"{self.name}: expected {pattern!r}, got {line!r}; stderr: {self.stderr_text()}")
        return match

    def wait_event(self, event: str, path: Optional[str] = None, timeout: float = TIMEOUT) -> dict:
        """The next JSON event line named ``event`` (for ``path``, if given);
        other lines are skipped, and an ``error`` event for ``path`` raises."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.next_line(max(deadline - time.monotonic(), 0.0))
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if path is not None and data.get("path") != path:
                continue
            if data.get("event") == event:
                return data
            if data.get("event") == "error":
                raise RuntimeError(f"{self.name} reported an error while waiting for {event!r}: {data}")

    async def event(self, event: str, path: Optional[str] = None, timeout: float = TIMEOUT) -> dict:
        return await asyncio.to_thread(self.wait_event, event, path, timeout)

    def send_json(self, data: dict) -> None:
        """Write one JSON line to the peer's stdin."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(data).encode() + b"\n")
        self.process.stdin.flush()

    def stop(self, timeout: float = 5.0) -> None:
        """Close stdin, then SIGTERM and SIGKILL if it lingers; always reaps the process group."""
        try:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(timeout)
        except (OSError, subprocess.TimeoutExpired):
            pass
        stop_process_group(self.process, timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.stderr.close()


# -- Node ws ---------------------------------------------------------------

NODE_COMMAND_PREFIX = "\0cmd "  # see tests/interop/node/echo_peer.js


def node_command(op: str, **arguments: Any) -> str:
    """A text message telling a Node echo peer to act (close, ping, send)."""
    return NODE_COMMAND_PREFIX + json.dumps({"op": op, **arguments})


def start_node_peer(script: str, *args: str, ready: str) -> tuple[PeerProcess, re.Match]:
    """Run ``tests/interop/node/<script>`` and wait for its first line to match
    ``ready``; fails if node or the ws package is missing."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError(f"`node` was not found on PATH: {INSTALL_HINT}")
    if not (NODE_DIR / "node_modules" / "ws" / "package.json").exists():
        raise RuntimeError(f"the ws package is not installed in {NODE_DIR}: {INSTALL_HINT}")
    peer = PeerProcess(f"node {script}", [node, str(NODE_DIR / script), *args], cwd=NODE_DIR)
    try:
        return peer, peer.wait_line(ready)
    except BaseException:
        peer.stop()
        raise


# -- Chromium over the DevTools protocol -------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-default-browser-check",
    "--mute-audio",
    "--remote-debugging-port=0",
]

# Give the websockets client proxy=None where it knows the option (15+), so that
# *_proxy variables are never consulted for 127.0.0.1.
NO_PROXY = {"proxy": None} if "proxy" in inspect.signature(websockets_connect).parameters else {}


def find_chromium() -> str:
    """The Chromium binary; the real one rather than Debian's /usr/bin wrapper script."""
    for candidate in (
        "/usr/lib/chromium/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
        shutil.which("google-chrome"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(f"Chromium was not found: {INSTALL_HINT}")


class Chromium:
    """A headless Chromium with a fresh profile; ``devtools_url`` is its CDP endpoint."""

    def __init__(self, process: subprocess.Popen, profile: str, devtools_url: str) -> None:
        self.process = process
        self.profile = profile
        self.devtools_url = devtools_url

    @classmethod
    def launch(cls, timeout: float = 30.0) -> Chromium:
        binary = find_chromium()
        profile = tempfile.mkdtemp(prefix="fastws-chromium-")
        log = open(os.path.join(profile, "chromium.log"), "wb")
        process = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # killpg reaches the zygotes and renderers
        )
        log.close()
        browser = cls(process, profile, "")
        try:
            browser.devtools_url = browser._wait_devtools_url(timeout)
        except BaseException:
            browser.close()
            raise
        return browser

    def _wait_devtools_url(self, timeout: float) -> str:
        """Poll for DevToolsActivePort (port, then browser path) until written."""
        port_file = Path(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with code {self.process.returncode}: {self._log_tail()}")
            try:
                lines = port_file.read_text().splitlines()
            except FileNotFoundError:
                lines = []
            if len(lines) >= 2 and lines[0].isdigit():  # the file may be half written
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            time.sleep(0.05)  # polling interval
        raise TimeoutError(f"chromium wrote no DevToolsActivePort within {timeout}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return Path(self.profile, "chromium.log").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    @asynccontextmanager
    async def page(self):
        """A new about:blank tab, closed on exit."""
        async with websockets_connect(
            self.devtools_url, max_size=None, ping_interval=None, open_timeout=TIMEOUT, compression=None, **NO_PROXY
        ) as devtools:
            cdp = DevToolsSession(devtools)
            target = (await cdp.call("Target.createTarget", url="about:blank"))["targetId"]
            try:
                attached = await cdp.call("Target.attachToTarget", targetId=target, flatten=True)
                yield Page(cdp, attached["sessionId"])
            finally:
                await cdp.call("Target.closeTarget", targetId=target)

    def close(self, timeout: float = 5.0) -> None:
        stop_process_group(self.process, timeout)
        shutil.rmtree(self.profile, ignore_errors=True)


class DevToolsSession:
    """A minimal Chrome DevTools Protocol client: one call at a time; events are ignored."""

    def __init__(self, connection) -> None:
        self.connection = connection
        self.ids = itertools.count(1)

    async def call(self, method: str, session: Optional[str] = None, timeout: float = TIMEOUT, **params: Any) -> dict:
        call_id = next(self.ids)
        message: dict = {"id": call_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        await self.connection.send(json.dumps(message))

        async def reply() -> dict:
            while True:
                answer = json.loads(await self.connection.recv())
                if answer.get("id") == call_id:
                    return answer

        answer = await asyncio.wait_for(reply(), timeout)
        if "error" in answer:
            raise RuntimeError(f"{method} failed: {answer['error']}")
        return answer["result"]


class Page:
    """One attached tab: evaluate JavaScript in it."""

    def __init__(self, cdp: DevToolsSession, session: str) -> None:
        self.cdp = cdp
        self.session = session

    async def evaluate(self, expression: str, timeout: float = LARGE_TIMEOUT) -> Any:
        """The value of ``expression`` (promises are awaited); a JS exception raises."""
        result = await self.cdp.call(
            "Runtime.evaluate",
            session=self.session,
            timeout=timeout,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise AssertionError(f"JavaScript failed: {details.get('exception', {}).get('description') or details}")
        return result["result"].get("value")
