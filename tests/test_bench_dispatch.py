"""Smoke test of bench/bench_dispatch.py: two names for this checkout, one short
run each, must each get a row with a figure for both sides and both sizes.

It runs the Python twin (``FASTWS_CODEC=python``): this checkout's ``src`` has
no compiled extensions where fastws is installed from a wheel, as in CI."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench", "bench_dispatch.py")


def test_bench_dispatch_reports_each_tree_side_and_size():
    cmd = [sys.executable, BENCH, f"one={ROOT}", f"two={ROOT}", "--runs", "1", "--echoes", "500", "--sizes", "16,2000"]
    env = dict(os.environ, FASTWS_CODEC="python")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    context = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, context
    header = [line for line in proc.stdout.splitlines() if line.startswith("| tree")]
    assert header and all(f"{side} {size} B" in header[0] for side in ("server", "client") for size in (16, 2000))
    rows = {}
    for line in proc.stdout.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] in ("one", "two"):
            rows[cells[0]] = cells[1:]
    assert set(rows) == {"one", "two"}, context
    for cells in rows.values():
        assert len(cells) == 4, context
        for cell in cells:
            best, median = (float(x.replace(",", "")) for x in cell.split(", "))
            assert 0 < best <= median, context
