"""One echo server, or the ``fastws bench`` client, from several fastws source
trees, measured in turns.

For a before-and-after comparison of a change: each tree's ``src`` goes first
on the ``PYTHONPATH`` (build the extensions in each tree first).

- By default each tree runs the server, the same ``fastws bench`` client (this
  checkout's) drives each in turn, and the report gives echoes/s and the
  server's CPU time per echo for every run, then the best and the median.
- With ``--clients`` each tree runs ``fastws bench`` against one server
  (``--server``, from this checkout; picows' by default), and the report gives
  the client's CPU time per echo instead; ``--picows-client`` adds picows'
  client (``bench_echo.py picows-client``) as a row of reference.

Servers run with glibc's default allocator settings unless ``GLIBC_TUNABLES``
is set, and the clients with their own. With ``--clients`` the server and
picows' client get the allocator settings ``fastws bench`` gives itself, as in
``bench_echo.py``, so that every client runs on the same allocator.

    python bench/bench_trees.py before=/tmp/old after=. --size 100k -- --mode pipelined --uvloop
    python bench/bench_trees.py a=/tmp/a b=. --server fastws_async.py --server-args=--uvloop --codec python
    python bench/bench_trees.py before=/tmp/old after=. --clients --picows-client --server-args=--uvloop -- --uvloop

Everything after ``--`` goes to ``fastws bench`` (and ``--uvloop`` also to picows' client).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Optional

from _procs import LIVE, fastws_bench, free_port, json_result, kill, proc_cpu_s, wait_for_port
from bench_echo import client_command, parse_sizes
from fastws._allocator import GLIBC_TUNABLES

HERE = os.path.dirname(os.path.abspath(__file__))


PICOWS_CLIENT = "picows client"
"""The name of the reference row of ``--picows-client``."""


def tree_env(tree: str, codec: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.path.join(os.path.abspath(tree), "src"), FASTWS_CODEC=codec)


def fastws_allocator_env() -> dict[str, str]:
    """This environment with the allocator settings of the ``fastws`` command
    (unless ``GLIBC_TUNABLES`` is set already)."""
    return dict(os.environ, GLIBC_TUNABLES=os.environ.get("GLIBC_TUNABLES", GLIBC_TUNABLES))


def start(server: str, server_args: list[str], env: dict[str, str], label: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = [sys.executable, os.path.join(HERE, "servers", server), "--port", str(port), *server_args]
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
    LIVE[proc.pid] = proc
    failure = wait_for_port(proc, port, 30)
    if failure:
        kill(proc)
        raise SystemExit(f"the server {label} {failure}")
    return proc, port


def run_client(port: int, args, client_args: list[str], env: Optional[dict[str, str]] = None) -> dict:
    """One run of ``fastws bench`` (with ``env``: a tree's) against ``port``: its JSON result."""
    bench_args = ["-d", str(args.duration), "--warmup", str(args.warmup), "-s", args.size, *client_args]
    return fastws_bench(f"ws://127.0.0.1:{port}/", bench_args, args.duration + 60, env=env)


def run_picows_client(port: int, args, client_args: list[str]) -> dict:
    """One run of bench_echo.py's picows client, in the mode, window and loop
    of ``fastws bench``'s arguments (round trips unless ``--mode pipelined``;
    a window of 16 unless ``--window``)."""
    mode = "pipelined" if "pipelined" in client_args else "roundtrip"
    window = int(client_args[client_args.index("--window") + 1]) if "--window" in client_args else 16
    loop = "uvloop" if "--uvloop" in client_args else "asyncio"
    size = parse_sizes(args.size)[0]
    cmd = client_command("picows", f"ws://127.0.0.1:{port}/", size, mode, window, loop, args)
    out = subprocess.run(cmd, env=fastws_allocator_env(), capture_output=True, text=True, timeout=args.duration + 60)
    data = json_result(out.stdout)
    if out.returncode or data is None:
        raise SystemExit(f"picows client failed ({out.returncode}): {out.stderr[-2000:]}")
    return data


def client_cpu_us(result: dict) -> float:
    """A client's CPU time per echo, µs, from its result (``client_cpu`` is in cores)."""
    return result["client_cpu"] * result["duration_s"] / result["messages"] * 1e6


def measure_servers(trees: dict[str, str], args, client_args: list[str]) -> dict[str, list[tuple[float, float]]]:
    """Each tree's server, driven in turns by this checkout's client: (echoes/s, server µs/echo) per run."""
    servers = {
        name: start(args.server, args.server_args.split(), tree_env(path, args.codec), f"from {path}")
        for name, path in trees.items()
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    try:
        for _ in range(args.rounds):
            for name, (proc, port) in servers.items():
                cpu0 = proc_cpu_s(proc.pid)
                rate = run_client(port, args, client_args)["msgs_per_s"]
                # The server's CPU over the client's warm-up and measured time,
                # per echo at the measured rate over both.
                cpu = proc_cpu_s(proc.pid) - cpu0
                results[name].append((rate, cpu / (rate * (args.duration + args.warmup)) * 1e6))
    finally:
        for proc, _ in servers.values():
            kill(proc)
    return results


def measure_clients(trees: dict[str, str], args, client_args: list[str]) -> dict[str, list[tuple[float, float]]]:
    """Each tree's client in turns (and picows' if asked) against one server: (echoes/s, client µs/echo) per run."""
    proc, port = start(args.server, args.server_args.split(), fastws_allocator_env(), args.server)
    names = list(trees) + ([PICOWS_CLIENT] if args.picows_client else [])
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    try:
        for _ in range(args.rounds):
            for name in names:
                if name == PICOWS_CLIENT:
                    result = run_picows_client(port, args, client_args)
                else:
                    result = run_client(port, args, client_args, tree_env(trees[name], args.codec))
                results[name].append((result["msgs_per_s"], client_cpu_us(result)))
    finally:
        kill(proc)
    return results


def main() -> None:
    args_, client_args = sys.argv[1:], []
    if "--" in args_:
        at = args_.index("--")
        args_, client_args = args_[:at], args_[at + 1 :]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trees", nargs="+", help="NAME=PATH of a fastws checkout with its extensions built")
    ap.add_argument("--clients", action="store_true", help="compare the trees' clients, not their servers")
    ap.add_argument("--picows-client", action="store_true", help="with --clients: add picows' client as a row")
    ap.add_argument("--server", help="a script in bench/servers (fastws_callback.py; with --clients picows_echo.py)")
    ap.add_argument("--server-args", default="", help="arguments for the server script, e.g. --uvloop")
    ap.add_argument("--codec", default="cython", help="FASTWS_CODEC for the trees (cython)")
    ap.add_argument("--size", default="256", help="message size (256)")
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per run (2)")
    ap.add_argument("--warmup", type=float, default=0.3, help="seconds of load before each run (0.3)")
    ap.add_argument("--rounds", type=int, default=4, help="runs per tree, in turns (4)")
    args = ap.parse_args(args_)
    if args.picows_client and not args.clients:
        ap.error("--picows-client needs --clients")
    args.server = args.server or ("picows_echo.py" if args.clients else "fastws_callback.py")
    trees = dict(tree.split("=", 1) for tree in args.trees)
    measure = measure_clients if args.clients else measure_servers
    results = measure(trees, args, client_args)
    side = "client" if args.clients else "server"
    if args.clients:
        print(f"- server: bench/servers/{args.server} {args.server_args} (this checkout)")
        print(f"- clients: each tree's fastws bench -s {args.size} -d {args.duration} {' '.join(client_args)}")
        print(f"  (FASTWS_CODEC={args.codec}){'; picows client of bench_echo.py' if args.picows_client else ''}")
    else:
        print(f"- server: bench/servers/{args.server} {args.server_args} (FASTWS_CODEC={args.codec})")
        print(f"- client: fastws bench -s {args.size} -d {args.duration} {' '.join(client_args)}")
    print(f"- date: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}; {args.rounds} runs per tree, in turns")
    print()
    print(f"| tree | echoes/s, each run | best | median | {side} µs/echo, best | median |")
    print("|---|---|---:|---:|---:|---:|")
    for name, runs in results.items():
        rates, cpus = [r for r, _ in runs], [c for _, c in runs]
        each = ", ".join(f"{r:,.0f}" for r in rates)
        print(
            f"| {name} | {each} | {max(rates):,.0f} | {statistics.median(rates):,.0f} "
            f"| {min(cpus):.1f} | {statistics.median(cpus):.1f} |"
        )


if __name__ == "__main__":
    main()
