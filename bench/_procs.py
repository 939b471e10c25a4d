"""Process plumbing shared by the benchmarks that run servers in subprocesses
(bench_echo.py, bench_fanout.py, bench_compression.py, bench_memory.py):
start-up bookkeeping, clean shutdown of whole process groups, the file
descriptor limit, and CPU accounting from /proc (a process's, and the load
other jobs put on the machine during a run)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from importlib import metadata
from typing import Any, Optional

LIVE: dict[int, subprocess.Popen] = {}  # every process we started and have not reaped


def kill(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """Stop a process we started (with its process group: it leads its own
    session), politely first, then for sure; always reap it. Once reaped, its
    id is never signalled again."""
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
    try:
        proc.wait(1)
    except subprocess.TimeoutExpired:
        pass
    LIVE.pop(proc.pid, None)


def kill_all() -> None:
    for proc in list(LIVE.values()):
        kill(proc, grace=1.0)


def on_signal(signum: int, frame: Any) -> None:
    kill_all()
    raise SystemExit(128 + signum)


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (all its threads)."""
    return sum(proc_cpu_split_s(pid))


def proc_cpu_split_s(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a live process (all its threads); the
    kernel accounts them by clock tick (10 ms), so take them over many messages."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0


def busy_s() -> Optional[float]:
    """CPU seconds all processes used on this machine so far (steal excluded)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    steal = fields[7] if len(fields) > 7 else 0
    return (sum(fields[:8]) - idle - steal) / os.sysconf("SC_CLK_TCK")


def self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def children_cpu_s() -> float:
    """CPU seconds of the children this process has reaped."""
    t = os.times()
    return t.children_user + t.children_system


class RunLoad:
    """The load other jobs put on the machine while a benchmark (or one cell
    of it) runs: machine-wide busy CPU less what this process, its reaped
    children and any other process of ours (``ours_s``, e.g. a server's CPU
    seconds meanwhile) used. A run disturbed by something else says so."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._busy = busy_s()
        self._ours = self_cpu_s() + children_cpu_s()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def other_cores(self, ours_s: float = 0.0) -> Optional[float]:
        """Cores busy with other jobs on average so far; None without /proc/stat."""
        busy, wall = busy_s(), self.elapsed
        if self._busy is None or busy is None or wall <= 0:
            return None
        ours = self_cpu_s() + children_cpu_s() - self._ours + max(0.0, ours_s)
        return max(0.0, (busy - self._busy) - ours) / wall

    def describe(self, cores: object) -> str:
        """E.g. "0.05 cores busy on average over the 207 s run (of 2)"; "n/a" without /proc/stat."""
        other = self.other_cores()
        if other is None:
            return "n/a"
        return f"{other:.2f} cores busy on average over the {self.elapsed:.0f} s run (of {cores})"


def pick_list(parser: argparse.ArgumentParser, text: Optional[str], allowed, default) -> list:
    """A comma-separated choice from ``allowed`` (all of ``default`` if empty); a parser error names the unknown."""
    if not text:
        return list(default)
    chosen = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in chosen if x not in allowed]
    if bad:
        parser.error(f"unknown {', '.join(bad)}; choose from {', '.join(allowed)}")
    return chosen


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    """The CPU's model name, for the header of every benchmark report."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(proc: subprocess.Popen, port: int, timeout: float) -> Optional[str]:
    """Wait until ``proc`` accepts TCP connections on 127.0.0.1:``port``.
    None once it does; else why not ("exited with N" or "did not accept within
    T s"), for the caller's own error with the process's output."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            return f"exited with {proc.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return None
        except OSError:
            if time.monotonic() > deadline:
                return f"did not accept within {timeout:g} s"
            time.sleep(0.05)


def json_result(stdout: str | bytes) -> Optional[dict]:
    """A benchmark client's result: the last line of its output that starts
    with ``{`` (``fastws bench --json``, bench_echo.py's picows client), or
    None when it printed none. Callers decide what a missing result means."""
    if isinstance(stdout, bytes):
        stdout = stdout.decode(errors="replace")
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return None


def fastws_bench(
    uri: str, args: list[str], timeout: float, env: Optional[dict] = None, cwd: Optional[str] = None
) -> dict:
    """Run ``fastws bench URI ARGS --json -q`` and return its JSON result;
    exit with the client's own words if it failed or saw errors."""
    cmd = [sys.executable, "-m", "fastws", "bench", uri, *args, "--json", "-q"]
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    data = json_result(out.stdout)
    if data is None:
        raise SystemExit(f"client failed ({out.returncode}): {out.stderr[-2000:]}")
    if data.get("errors") or not data.get("messages"):
        raise SystemExit(f"client errors: {data}")
    return data
