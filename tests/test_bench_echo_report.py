"""The report of bench/bench_echo.py from given cells (no processes run): the
client-bound mark on the server table and the clients' CPU per echo."""

from __future__ import annotations

import os
import sys

import pytest

BENCH_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


@pytest.fixture(scope="module")
def bench_echo():
    sys.path.insert(0, BENCH_DIR)
    try:
        import bench_echo

        yield bench_echo
    finally:
        sys.path.remove(BENCH_DIR)


META = {
    "command": "python bench/bench_echo.py (test)",
    "date": "2026-11-29T00:00:00+00:00",
    "cpu": "test CPU",
    "cores": 2,
    "platform": "test",
    "python": "3.x",
    "versions": {},
    "warmup": 0.3,
    "duration": 1.5,
    "window": 16,
    "repeat": 1,
    "pinning": "none",
    "malloc": "",
    "load": "",
}
PLAN = {
    "servers": ["fastws-callback", "picows"],
    "clients": ["picows", "fastws"],
    "loops": ["uvloop"],
    "modes": ["roundtrip", "pipelined"],
    "sizes": [256],
}


def cell(server: str, client: str, mode: str, rate: float, client_cpu: float) -> dict:
    return {
        "server": server,
        "client": client,
        "loop": "uvloop",
        "mode": mode,
        "size": 256,
        "msgs_per_s": rate,
        "client_cpu": client_cpu,
        "client_us_per_msg": round(client_cpu / rate * 1e6, 2),
        "server_us_per_msg": 30.0,
        "server_user_us_per_msg": 10.0,
    }


CELLS = [
    # Round trips: neither client near a whole core.
    cell("fastws-callback", "picows", "roundtrip", 10_000, 0.40),
    cell("picows", "picows", "roundtrip", 12_500, 0.45),
    cell("fastws-callback", "fastws", "roundtrip", 10_000, 0.50),
    cell("picows", "fastws", "roundtrip", 12_000, 0.48),
    # Pipelined: the picows client saturates its core against both servers.
    cell("fastws-callback", "picows", "pipelined", 150_000, 0.99),
    cell("picows", "picows", "pipelined", 150_000, 0.96),
    cell("fastws-callback", "fastws", "pipelined", 200_000, 0.80),
    cell("picows", "fastws", "pipelined", 150_000, 0.90),
]


def table_row(report: str, *first: str) -> list[str]:
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[: len(first)] == list(first):
            return cells
    raise AssertionError(f"no row starting {first} in:\n{report}")


def section(report: str, title: str) -> str:
    return report.partition(title)[2].partition("\n## ")[0]


def test_client_bound_cells_are_marked(bench_echo):
    report = bench_echo.markdown(META, CELLS, PLAN)
    servers = section(report, "## Servers:")
    assert table_row(servers, "uvloop", "picows", "pipe", "256 B")[4:] == ["150,000 (1.00) †", "150,000 (1.00) †"]
    assert table_row(servers, "uvloop", "fastws", "pipe", "256 B")[4:] == ["200,000 (1.33)", "150,000 (1.00)"]
    assert table_row(servers, "uvloop", "picows", "rt", "256 B")[4:] == ["10,000 (0.80)", "12,500 (1.00)"]


def test_client_cpu_per_echo_is_compared(bench_echo):
    report = bench_echo.markdown(META, CELLS, PLAN)
    against_picows = section(report, "### Client CPU time per echo, µs, against the picows server")
    # fastws bench 0.48 / 12,000 = 40 µs per echo; the picows client 0.45 / 12,500 = 36 µs.
    assert table_row(against_picows, "uvloop", "rt")[2] == "40.0 (1.11) vs 36.0"
    # 0.90 / 150,000 = 6 µs against 0.96 / 150,000 = 6.4 µs.
    assert table_row(against_picows, "uvloop", "pipe")[2] == "6.0 (0.94) vs 6.4"
    against_fastws = section(report, "### Client CPU time per echo, µs, against the fastws-callback server")
    assert table_row(against_fastws, "uvloop", "rt")[2] == "50.0 (1.25) vs 40.0"


def test_a_client_result_is_its_last_json_line(bench_echo):
    import _procs

    out = 'fastws bench: connecting\n{"messages": 1}\nwarning: slow\n{"messages": 2, "errors": 0}\n'
    assert _procs.json_result(out) == {"messages": 2, "errors": 0}
    assert _procs.json_result(out.encode()) == {"messages": 2, "errors": 0}  # Popen's bytes
    assert _procs.json_result("Traceback (most recent call last):\n  ...\n") is None


def test_every_run_is_compared_with_the_picows_run_beside_it(bench_echo):
    # Best of 3: fastws 10,000 beats picows' best 12,500 nowhere, and its runs
    # 9,000 / 10,000 / 8,000 against picows' 10,000 / 12,500 / 8,000 give
    # 0.90, 0.80 and 1.00 run by run.
    cells = [dict(c) for c in CELLS]
    for c in cells:
        c["runs"] = [c["msgs_per_s"]]
    cells[0]["runs"] = [9_000, 10_000, 8_000]
    cells[1]["runs"] = [10_000, 12_500, 8_000]
    report = bench_echo.markdown({**META, "repeat": 3}, cells, PLAN)
    by_run = section(report, "## Run by run:")
    assert table_row(by_run, "uvloop", "picows", "rt", "256 B")[4:] == ["0.80, 0.90"]
    assert table_row(by_run, "uvloop", "fastws", "pipe", "256 B")[4:] == ["1.33, 1.33"]
    assert "## Run by run" not in bench_echo.markdown(META, CELLS, PLAN)  # one run: nothing to add


def test_the_picows_control_gets_its_own_run_by_run_column(bench_echo):
    # A second picows server, measured in turns with the first: 11,000 / 12,500 /
    # 8,800 against picows' 10,000 / 12,500 / 8,000 give 1.10, 1.00 and 1.10.
    cells = [dict(c) for c in CELLS]
    for c in cells:
        c["runs"] = [c["msgs_per_s"]]
    cells[1]["runs"] = [10_000, 12_500, 8_000]
    control = dict(cells[1], server="picows-control", runs=[11_000, 12_500, 8_800], msgs_per_s=12_500)
    cells.append(control)
    plan = {**PLAN, "servers": ["fastws-callback", "picows", "picows-control"]}
    by_run = section(bench_echo.markdown({**META, "repeat": 3}, cells, plan), "## Run by run:")
    assert "picows ctl: lowest, median" in by_run and "`picows ctl` is a second picows server" in by_run
    assert table_row(by_run, "uvloop", "picows", "rt", "256 B")[5] == "1.00, 1.10"
    assert "picows ctl" not in section(bench_echo.markdown({**META, "repeat": 3}, cells, PLAN), "## Run by run:")
