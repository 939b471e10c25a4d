"""One echo server from several fastws source trees, measured in turns.

For a before-and-after comparison of a change: each tree's ``src`` goes first
on the server's ``PYTHONPATH`` (build the extensions in each tree first), the
same ``fastws bench`` client (this checkout's) drives each server in turn, and
the report gives echoes/s and the server's CPU time per echo for every run,
then the best and the median. Servers run with glibc's default allocator
settings unless ``GLIBC_TUNABLES`` is set; the client keeps its own.

    python bench/bench_trees.py before=/tmp/old after=. --size 100k -- --mode pipelined --uvloop
    python bench/bench_trees.py a=/tmp/a b=. --server fastws_async.py --server-args=--uvloop --codec python

Everything after ``--`` goes to ``fastws bench``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from _procs import LIVE, fastws_bench, free_port, kill, proc_cpu_s, wait_for_port

HERE = os.path.dirname(os.path.abspath(__file__))


def start(tree: str, server: str, server_args: list[str], codec: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.abspath(tree), "src"), FASTWS_CODEC=codec)
    script = os.path.join(HERE, "servers", server)
    cmd = [sys.executable, script, "--port", str(port), *server_args]
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True)
    LIVE[proc.pid] = proc
    failure = wait_for_port(proc, port, 30)
    if failure:
        kill(proc)
        raise SystemExit(f"the server from {tree} {failure}")
    return proc, port


def run_client(port: int, size: str, duration: float, client_args: list[str]) -> float:
    args = ["-d", str(duration), "--warmup", "0.3", "-s", size, *client_args]
    return fastws_bench(f"ws://127.0.0.1:{port}/", args, duration + 60)["msgs_per_s"]


def main() -> None:
    args_, client_args = sys.argv[1:], []
    if "--" in args_:
        at = args_.index("--")
        args_, client_args = args_[:at], args_[at + 1 :]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trees", nargs="+", help="NAME=PATH of a fastws checkout with its extensions built")
    ap.add_argument("--server", default="fastws_callback.py", help="a script in bench/servers (fastws_callback.py)")
    ap.add_argument("--server-args", default="", help="arguments for the server script, e.g. --uvloop")
    ap.add_argument("--codec", default="cython", help="FASTWS_CODEC for the servers (cython)")
    ap.add_argument("--size", default="256", help="message size (256)")
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per run (2)")
    ap.add_argument("--rounds", type=int, default=4, help="runs per tree, in turns (4)")
    args = ap.parse_args(args_)
    trees = dict(tree.split("=", 1) for tree in args.trees)
    servers = {name: start(path, args.server, args.server_args.split(), args.codec) for name, path in trees.items()}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    try:
        for _ in range(args.rounds):
            for name, (proc, port) in servers.items():
                cpu0 = proc_cpu_s(proc.pid)
                rate = run_client(port, args.size, args.duration, client_args)
                # The server's CPU over the client's warm-up and measured time,
                # per echo at the measured rate over both.
                cpu = proc_cpu_s(proc.pid) - cpu0
                results[name].append((rate, cpu / (rate * (args.duration + 0.3)) * 1e6))
    finally:
        for proc, _ in servers.values():
            kill(proc)
    print(f"- server: bench/servers/{args.server} {args.server_args} (FASTWS_CODEC={args.codec})")
    print(f"- client: fastws bench -s {args.size} -d {args.duration} {' '.join(client_args)}")
    print(f"- date: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}; {args.rounds} runs per tree, in turns")
    print()
    print("| tree | echoes/s, each run | best | median | server µs/echo, best | median |")
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
