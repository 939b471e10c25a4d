"""Smoke test of bench/bench_fanout.py: a tiny run (10 subscribers, 1 s cells,
asyncio loop) against the three relays (fastws, websockets, picows) must give
each a row with a positive delivery rate, and fastws must lose nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "bench_fanout.py")


def rows(report: str) -> dict[str, list[str]]:
    """The result table's rows by server: | loop | subscribers | server | msg/s | ... (13 columns) | loss |."""
    found = {}
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 13 and cells[1] == "10" and cells[0] == "asyncio":
            found[cells[2]] = cells
    return found


@pytest.mark.slow
def test_fanout_bench_quick_run():
    cmd = [sys.executable, BENCH, "--quick", "--subscribers", "10", "--loops", "asyncio"]
    cmd += ["--duration", "1", "--warmup", "0.2", "--timeout", "10", "--no-save"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    table = rows(proc.stdout)
    context = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    for server in ("fastws", "websockets", "picows"):
        assert server in table, f"no row for {server}\n{context}"
        assert float(table[server][3].replace(",", "")) > 0, context
    assert table["fastws"][-1] == "0", f"fastws lost or reordered messages\n{context}"
    failures = proc.stdout.partition("## Failures")[2]
    assert "- fastws," not in failures, context
