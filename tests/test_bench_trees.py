"""Smoke tests of bench/bench_trees.py: two names for this checkout, two short
runs each, must each get a row with every run's rate and a CPU figure (the
server's; with ``--clients``, the client's, and a row for picows' client).

The trees run the Python twin (``--codec python``): this checkout's ``src``
has no compiled extensions where fastws is installed from a wheel, as in CI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench", "bench_trees.py")


def run_bench_trees(*options: str) -> tuple[dict[str, list[str]], str, str]:
    """Run bench_trees.py on two names for this checkout, two short runs each:
    its table rows by name, its stdout, and the context for a failure."""
    cmd = [sys.executable, BENCH, f"one={ROOT}", f"two={ROOT}", "--rounds", "2", "--duration", "0.3", "--size", "1k"]
    cmd += ["--codec", "python", *options]
    proc = subprocess.run(cmd + ["--", "--mode", "pipelined"], capture_output=True, text=True, timeout=120)
    context = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, context
    rows = {}
    for line in proc.stdout.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 6 and not cells[0].startswith(("tree", "---")):
            rows[cells[0]] = cells
    for cells in rows.values():
        runs = [float(rate.replace(",", "")) for rate in cells[1].split(", ")]
        assert len(runs) == 2 and min(runs) > 0, context
        assert float(cells[4]) > 0, context  # CPU µs per echo
    return rows, proc.stdout, context


@pytest.mark.slow
def test_bench_trees_reports_each_tree():
    rows, out, context = run_bench_trees()
    assert set(rows) == {"one", "two"}, context
    assert "server µs/echo" in out, context
    assert "client: fastws bench -s 1k -d 0.3 --mode pipelined" in out, context


@pytest.mark.slow
def test_bench_trees_compares_clients_with_picows_client():
    rows, out, context = run_bench_trees("--clients", "--picows-client")
    assert set(rows) == {"one", "two", "picows client"}, context
    assert "client µs/echo" in out and "server: bench/servers/picows_echo.py" in out, context
