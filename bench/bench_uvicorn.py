"""uvicorn + Starlette echo: fastws's ``--ws`` protocol class against uvicorn's own.

One Starlette echo endpoint (bench/servers/uvicorn_echo.py) is served by uvicorn
three times, each with another WebSocket implementation:

- ``fastws``: ``--ws fastws.uvicorn:WebSocketProtocol``
- ``websockets-sansio``: ``--ws websockets-sansio`` (uvicorn's built-in, websockets' sans-I/O core)
- ``wsproto``: ``--ws wsproto``

and driven by the same client, ``python -m fastws bench`` (one connection,
binary messages), for 256 B and 8 KiB messages, ``roundtrip`` (one message in
flight) and ``pipelined`` (``--window`` in flight). Server and client are pinned
to different CPUs when there are two. The servers take turns within each cell,
for ``--rounds`` rounds; a cell's figure is the median of its rounds.

    python bench/bench_uvicorn.py            # ~3 min; markdown on stdout
    python bench/bench_uvicorn.py --quick    # ~1 min, rough numbers

Results go to bench/results/uvicorn.md and bench/results/uvicorn.json.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
from typing import Any, Optional

from _procs import (
    LIVE,
    cpu_model,
    free_port,
    json_result,
    kill,
    kill_all,
    on_signal,
    proc_cpu_s,
    version,
    wait_for_port,
)

HERE = os.path.dirname(os.path.abspath(__file__))
SERVERS_DIR = os.path.join(HERE, "servers")
RESULTS_DIR = os.environ.get("FASTWS_BENCH_RESULTS") or os.path.join(HERE, "results")  # run_all.sh may say elsewhere
PY = sys.executable
IMPLEMENTATIONS = {
    "fastws": "fastws.uvicorn:WebSocketProtocol",
    "websockets-sansio": "websockets-sansio",
    "wsproto": "wsproto",
}
SIZES = (256, 8192)
MODES = ("roundtrip", "pipelined")


def pin(cpu: Optional[int]):
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


def cpus() -> tuple[Optional[int], Optional[int]]:
    """(server CPU, client CPU), or no pinning on a single CPU."""
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return (available[0], available[1]) if len(available) >= 2 else (None, None)


def server_command(ws: str, port: int) -> list[str]:
    return [PY, "-m", "uvicorn", "uvicorn_echo:app", "--port", str(port), "--ws", ws, "--loop", "asyncio"] + [
        "--log-level",
        "warning",
        "--no-access-log",
        "--ws-ping-interval",
        "0",
    ]


def start_server(ws: str, cpu: Optional[int], timeout: float = 20.0) -> tuple[subprocess.Popen, int]:
    """Start uvicorn and wait (bounded) until its port accepts connections."""
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("FASTWS_CODEC", None)  # the compiled codec, as installed
    proc = subprocess.Popen(
        server_command(ws, port),
        cwd=SERVERS_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=pin(cpu),
    )
    LIVE[proc.pid] = proc
    failure = wait_for_port(proc, port, timeout)
    if failure is None:
        return proc, port
    if proc.poll() is not None:
        output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        raise RuntimeError(f"uvicorn --ws {ws} exited with {proc.returncode}:\n{output}")
    kill(proc)
    raise RuntimeError(f"uvicorn --ws {ws} did not listen within {timeout} s")


def client_command(port: int, size: int, mode: str, args: argparse.Namespace) -> list[str]:
    window = 1 if mode == "roundtrip" else args.window
    return [PY, "-m", "fastws", "bench", f"ws://127.0.0.1:{port}/", "-c", "1", "-s", str(size)] + [
        "-d",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--mode",
        mode,
        "--window",
        str(window),
        "--json",
        "-q",
    ]


def run_client(
    server: subprocess.Popen, port: int, size: int, mode: str, args: argparse.Namespace, cpu: Optional[int]
) -> dict[str, Any]:
    """One client run against one server: its rate, and the server's CPU time per echo."""
    command = client_command(port, size, mode, args)
    server_cpu0 = proc_cpu_s(server.pid)
    env = dict(os.environ, FASTWS_CODEC="cython")
    proc = subprocess.Popen(
        command,
        cwd=HERE,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=pin(cpu),
    )
    LIVE[proc.pid] = proc
    try:
        out, err = proc.communicate(timeout=args.warmup + args.duration + 30)
    except subprocess.TimeoutExpired:
        kill(proc)
        return {"error": "client timed out"}
    finally:
        kill(proc)
    server_cpu = proc_cpu_s(server.pid) - server_cpu0
    data = json_result(out)
    if data is None:
        return {"error": f"client exit {proc.returncode}: {err.decode(errors='replace')[-500:]}"}
    errors = data.get("errors", 0) + data.get("unexpected_closes", 0)
    # The server's CPU over the whole client run (connect, warmup, measurement)
    # per echo made in warmup + measurement, estimated from the measured rate:
    # much less sensitive than msgs/s to other load and to the client's own limit.
    echoes = data["msgs_per_s"] * (args.warmup + data["duration_s"])
    server_us = server_cpu / echoes * 1e6 if echoes else None
    return {"msgs_per_s": data["msgs_per_s"], "errors": errors, "server_us_per_msg": server_us}


def measure(args: argparse.Namespace, failures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    server_cpu, client_cpu = cpus()
    cells: list[dict[str, Any]] = []
    servers = {name: start_server(ws, server_cpu) for name, ws in IMPLEMENTATIONS.items()}
    try:
        for mode in MODES:
            for size in SIZES:
                rates: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
                cpu: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
                for round_ in range(args.rounds):
                    for name in IMPLEMENTATIONS:  # the servers take turns
                        result = run_client(*servers[name], size, mode, args, client_cpu)
                        if "error" in result or result["errors"]:
                            # A wedged server is restarted once; a second failure is a result.
                            print(f"  {name} {mode} {size} B failed, restarting it: {result}", file=sys.stderr)
                            failures.append({"server": name, "mode": mode, "size": size, "result": result})
                            kill(servers[name][0])
                            servers[name] = start_server(IMPLEMENTATIONS[name], server_cpu)
                            result = run_client(*servers[name], size, mode, args, client_cpu)
                            if "error" in result or result["errors"]:
                                raise RuntimeError(f"{name} {mode} {size}: {result}")
                        rates[name].append(result["msgs_per_s"])
                        cpu[name].append(result["server_us_per_msg"])
                        rate = result["msgs_per_s"]
                        print(f"  {mode} {size} B round {round_ + 1} {name}: {rate:,.0f}", file=sys.stderr)
                for name, values in rates.items():
                    cells.append(
                        {
                            "server": name,
                            "mode": mode,
                            "size": size,
                            "window": 1 if mode == "roundtrip" else args.window,
                            "msgs_per_s": statistics.median(values),
                            "rounds": values,
                            "server_us_per_msg": statistics.median(cpu[name]),
                            "server_us_per_msg_rounds": cpu[name],
                        }
                    )
    finally:
        for proc, _ in servers.values():
            kill(proc)
    return cells


def report(cells: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    by_key = {(cell["server"], cell["mode"], cell["size"]): cell["msgs_per_s"] for cell in cells}
    cpu_key = {(cell["server"], cell["mode"], cell["size"]): cell["server_us_per_msg"] for cell in cells}
    lines = [
        "# uvicorn + Starlette echo: fastws vs uvicorn's built-in WebSocket classes",
        "",
        f"- machine: {meta['cpu']}, {meta['cpus']} CPUs, {meta['python']}, {meta['platform']}",
        f"- date: {meta['date']}",
        f"- command: `{meta['command']}`",
        f"- versions: uvicorn {meta['uvicorn']}, starlette {meta['starlette']}, websockets {meta['websockets']}, "
        f"wsproto {meta['wsproto']}, pyfastws {meta['pyfastws']}",
        f"- client: `{meta['client']}` (one connection, binary messages); median of {meta['rounds']} rounds",
        *restarts(meta),
        "",
        "Messages per second (each echoed once); in brackets, the ratio to websockets-sansio.",
        "",
        "| mode | size | " + " | ".join(IMPLEMENTATIONS) + " |",
        "|---|---:|" + "---:|" * len(IMPLEMENTATIONS),
    ]
    for mode in MODES:
        for size in SIZES:
            reference = by_key[("websockets-sansio", mode, size)]
            row = []
            for name in IMPLEMENTATIONS:
                rate = by_key[(name, mode, size)]
                row.append(f"{rate:,.0f} ({rate / reference:.2f}×)")
            label = mode if mode == "roundtrip" else f"pipelined (window {meta['window']})"
            lines.append(f"| {label} | {fmt_size(size)} | " + " | ".join(row) + " |")
    lines += [
        "",
        "Server CPU time per echo (µs; lower is better), the server's CPU over the client run divided by",
        "the echoes; in brackets, how many times less CPU than websockets-sansio.",
        "",
        "| mode | size | " + " | ".join(IMPLEMENTATIONS) + " |",
        "|---|---:|" + "---:|" * len(IMPLEMENTATIONS),
    ]
    for mode in MODES:
        for size in SIZES:
            reference = cpu_key[("websockets-sansio", mode, size)]
            row = [
                f"{cpu_key[(name, mode, size)]:.0f} ({reference / cpu_key[(name, mode, size)]:.2f}×)"
                for name in IMPLEMENTATIONS
            ]
            label = mode if mode == "roundtrip" else f"pipelined (window {meta['window']})"
            lines.append(f"| {label} | {fmt_size(size)} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def restarts(meta: dict[str, Any]) -> list[str]:
    failed = [f"{failure['server']} ({failure['mode']}, {failure['size']} B)" for failure in meta.get("failures", [])]
    return [f"- restarted after a failed client run: {', '.join(failed)}"] if failed else []


def fmt_size(size: int) -> str:
    return f"{size // 1024} KiB" if size >= 1024 else f"{size} B"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds measured per cell and round")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=32, help="messages in flight in pipelined mode")
    parser.add_argument("--quick", action="store_true", help="1 round of 1.5 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.rounds = 1.5, 0.5, 1
    atexit.register(kill_all)
    signal.signal(signal.SIGTERM, on_signal)
    meta = {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "python": f"Python {platform.python_version()}",
        "platform": platform.platform(terse=True),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python", "bench/bench_uvicorn.py", *(argv if argv is not None else sys.argv[1:])]),
        "client": shlex.join(["python", "-m", "fastws", "bench", "URI", "-c", "1", "-s", "SIZE", "--mode", "MODE"]),
        "rounds": args.rounds,
        "window": args.window,
        **{name: version(name) for name in ("uvicorn", "starlette", "websockets", "wsproto", "pyfastws")},
    }
    failures: list[dict[str, Any]] = []
    cells = measure(args, failures)
    meta["failures"] = failures
    markdown = report(cells, meta)
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, "uvicorn.md"), "w") as f:
        f.write(markdown)
    with open(os.path.join(RESULTS_DIR, "uvicorn.json"), "w") as f:
        json.dump({"meta": meta, "cells": cells}, f, indent=1)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
