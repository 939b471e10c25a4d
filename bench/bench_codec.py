#!/usr/bin/env python
"""Codec micro-benchmarks: fastws (Cython and pure Python) against its peers.

    python bench/bench_codec.py [--quick] [--json FILE]

Prints markdown tables (machine, masking throughput, parsing throughput, targets)
to stdout and a progress line to stderr. See bench/README.md for the columns.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import random
import struct
import sys
import time
from typing import Callable

from _procs import cpu_model  # noqa: E402
from fastws import _codec_py

try:
    from fastws import _codec as _codec_cy
except ImportError:  # not built: the Cython rows and targets are skipped
    _codec_cy = None

KiB = 1024
MiB = 1024 * KiB

MASK_SIZES = [16, 64, 256, KiB, 4 * KiB, 64 * KiB, MiB, 16 * MiB]
PARSE_SIZES = [16, KiB, 64 * KiB]
CHUNK = 64 * KiB
# Frames per parsed stream: enough to amortise per-pass set-up, small enough that
# the slowest (pure-Python) parsers finish a pass in a fraction of a second.
PARSE_FRAMES = {16: 20_000, KiB: 2_000, 64 * KiB: 128}
PARSE_FRAMES_QUICK = {16: 5_000, KiB: 500, 64 * KiB: 32}

KEY = bytes((0x37, 0xFA, 0x21, 0x3D))


# -- output helpers -------------------------------------------------------------


def fmt_size(n: int) -> str:
    if n >= MiB:
        return f"{n // MiB} MiB"
    if n >= KiB:
        return f"{n // KiB} KiB"
    return f"{n} B"


def fmt_rate(x: float | None) -> str:
    if x is None:
        return "n/a"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"


def fmt_ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}×"


def table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    """A markdown table; the first ``left`` columns are text (left-aligned)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"]
    out.append("|" + "|".join("-" * (w + 2) if i < left else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|")
    for r in rows:
        out.append(
            "| " + " | ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"
        )
    return "\n".join(out)


class Progress:
    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.t0 = time.perf_counter()
        self.tty = sys.stderr.isatty()

    def step(self, what: str) -> None:
        self.done += 1
        line = f"[{self.done:3d}/{self.total}] {time.perf_counter() - self.t0:5.1f}s  {what}"
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
        sys.stderr.write(f"done in {time.perf_counter() - self.t0:.1f}s\n")
        sys.stderr.flush()


# -- timing ---------------------------------------------------------------------


def calibrate(run: Callable[[int], float], min_time: float) -> tuple[int, float]:
    """Loops per run so that one ``run(loops)`` lasts at least ``min_time``.

    ``run(loops)`` executes the workload ``loops`` times and returns the elapsed
    perf_counter time. Returns (loops, seconds of the last, long-enough run),
    which counts as the first sample. Calibrating also warms caches and the
    allocator.
    """
    loops = 1
    while True:
        t = run(loops)
        if t >= min_time:
            return loops, t
        if t <= 0:
            loops *= 10
        else:
            loops = max(loops + 1, min(loops * 10, int(loops * min_time * 1.2 / t) + 1))


def best_times(
    runs: dict[str, Callable[[int], float]], min_time: float, repeats: int, progress: Progress, label: str
) -> dict[str, float]:
    """Best seconds per loop of each ``run``, over ``repeats`` runs each.

    After calibration the implementations are measured round-robin (A B C,
    A B C, ...) rather than back to back, so that a burst of outside load hits
    one sample of each of them instead of every sample of one. GC is disabled
    throughout.
    """
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        loops, best = {}, {}
        for name, run in runs.items():
            progress.step(f"{label}  {name}")
            loops[name], t = calibrate(run, min_time)
            best[name] = t / loops[name]
        for _ in range(repeats - 1):
            for name, run in runs.items():
                best[name] = min(best[name], run(loops[name]) / loops[name])
        return best
    finally:
        if gc_was_enabled:
            gc.enable()


# -- masking --------------------------------------------------------------------


def mask_impls() -> list[tuple[str, Callable[[bytes, bytes], Callable[[int], float]]]]:
    """(name, setup) pairs; setup(data, key) returns run(loops) -> seconds.

    Each run() is a tight loop around one call, so per-call overhead (argument
    parsing, allocation) is part of the measurement, as it is for a user.
    """
    pc = time.perf_counter
    impls = []

    def memcpy(data, key):
        src = bytearray(data)  # bytes(bytes) would return the same object

        def run(loops):
            f = bytes
            t = pc()
            for _ in range(loops):
                f(src)
            return pc() - t

        return run

    impls.append(("memcpy: bytes(bytearray)", memcpy))

    def returning(fn):
        def setup(data, key):
            def run(loops):
                f = fn
                t = pc()
                for _ in range(loops):
                    f(data, key)
                return pc() - t

            return run

        return setup

    if _codec_cy is not None:
        impls.append(("fastws cython apply_mask", returning(_codec_cy.apply_mask)))

        def fastws_inplace(data, key):
            buf = bytearray(data)
            fn = _codec_cy.apply_mask_inplace

            def run(loops):
                f = fn
                t = pc()
                for _ in range(loops):
                    f(buf, key)
                return pc() - t

            return run

        impls.append(("fastws cython apply_mask_inplace", fastws_inplace))

    impls.append(("fastws python apply_mask", returning(_codec_py.apply_mask)))

    try:
        from websockets.speedups import apply_mask as ws_apply_mask

        impls.append(("websockets.speedups.apply_mask", returning(ws_apply_mask)))
    except ImportError:
        pass

    try:
        from aiohttp._websocket.mask import _websocket_mask_cython as aio_mask

        def aio_inplace(data, key):
            buf = bytearray(data)

            def run(loops):
                f = aio_mask
                t = pc()
                for _ in range(loops):
                    f(key, buf)
                return pc() - t

            return run

        def aio_copy(data, key):
            def run(loops):
                f = aio_mask
                ba = bytearray
                t = pc()
                for _ in range(loops):
                    f(key, ba(data))
                return pc() - t

            return run

        impls.append(("aiohttp mask (in place)", aio_inplace))
        impls.append(("aiohttp mask (bytearray copy + in place)", aio_copy))
    except ImportError:
        pass

    try:
        from wsaccel.xormask import XorMaskerSimple

        def wsaccel(data, key):
            masker = XorMaskerSimple(key)  # stateful (tracks offset), reused as intended

            def run(loops):
                f = masker.process
                t = pc()
                for _ in range(loops):
                    f(data)
                return pc() - t

            return run

        impls.append(("wsaccel XorMaskerSimple.process", wsaccel))
    except ImportError:
        pass

    return impls


def check_masks(impls) -> None:
    data = bytes(random.Random(1).getrandbits(8) for _ in range(1031))
    expected = bytes(b ^ KEY[i % 4] for i, b in enumerate(data))
    for name, _setup in impls:
        if name.startswith("memcpy"):
            continue
        # Re-derive each implementation's output once, outside timing.
        if "apply_mask_inplace" in name:
            buf = bytearray(data)
            _codec_cy.apply_mask_inplace(buf, KEY)
            got = bytes(buf)
        elif name.startswith("aiohttp"):
            from aiohttp._websocket.mask import _websocket_mask_cython

            buf = bytearray(data)
            _websocket_mask_cython(KEY, buf)
            got = bytes(buf)
        elif name.startswith("wsaccel"):
            from wsaccel.xormask import XorMaskerSimple

            got = bytes(XorMaskerSimple(KEY).process(data))
        elif name.startswith("websockets"):
            from websockets.speedups import apply_mask

            got = apply_mask(data, KEY)
        elif "cython" in name:
            got = _codec_cy.apply_mask(data, KEY)
        else:
            got = _codec_py.apply_mask(data, KEY)
        if got != expected:
            raise SystemExit(f"masking self-check failed for {name}")


def bench_masking(impls, min_time, repeats, progress) -> dict:
    results: dict[str, dict[int, float]] = {name: {} for name, _ in impls}
    rng = random.Random(0)
    for size in MASK_SIZES:
        data = rng.randbytes(size)
        runs = {name: setup(data, KEY) for name, setup in impls}
        for name, per_call in best_times(runs, min_time, repeats, progress, f"mask {fmt_size(size):>7}").items():
            results[name][size] = size / per_call  # bytes/s
    return results


def print_masking(results) -> None:
    names = list(results)
    memcpy = results[names[0]]
    print("## Masking throughput (GB/s, and ratio to memcpy)\n")
    header = ["implementation"] + [fmt_size(s) for s in MASK_SIZES]
    rows = []
    for name in names:
        rows.append([name] + [f"{results[name][s] / 1e9:.2f}" for s in MASK_SIZES])
    print(table(header, rows))
    print()
    rows = []
    for name in names[1:]:
        rows.append([name] + [fmt_ratio(results[name][s] / memcpy[s]) for s in MASK_SIZES])
    print(table(["÷ memcpy"] + header[1:], rows))
    print()


# -- parsing --------------------------------------------------------------------


def build_stream(size: int, count: int) -> tuple[list[bytes], bytes]:
    """``count`` masked client->server binary frames of ``size`` payload bytes,
    each with its own random key, built without the codec under test; returned
    split into CHUNK-sized pieces, plus the last payload for the self-check."""
    from websockets.speedups import apply_mask  # an independent masking routine

    rng = random.Random(size)
    payloads = [rng.randbytes(size) for _ in range(min(count, 16))]
    parts = []
    for i in range(count):
        payload = payloads[i % len(payloads)]
        key = rng.randbytes(4)
        if size < 126:
            head = struct.pack("!BB", 0x82, 0x80 | size)
        elif size < 65536:
            head = struct.pack("!BBH", 0x82, 0x80 | 126, size)
        else:
            head = struct.pack("!BBQ", 0x82, 0x80 | 127, size)
        parts.append(head + key + apply_mask(payload, key))
    stream = b"".join(parts)
    chunks = [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]
    return chunks, payloads[(count - 1) % len(payloads)]


# Each factory returns make(); make() builds a fresh parser and returns
# (feed_all, last): feed_all(chunks) feeds every chunk, consumes what the parser
# delivers and returns the number of messages; last() gives the last payload,
# for the self-check only. Parsers are built outside the timed region.


def fastws_parser(codec):
    def make():
        p = codec.FrameParser(max_message_size=None)
        feed = p.feed
        got = []

        def feed_all(chunks):
            n = 0
            for c in chunks:
                msgs = feed(c)
                n += len(msgs)
                if msgs:
                    got[:] = msgs[-1:]
            return n

        return feed_all, lambda: got[-1].payload

    return make


def websockets_parser():
    from websockets.protocol import OPEN, Protocol, Side

    def make():
        proto = Protocol(Side.SERVER, state=OPEN, max_size=None)
        receive, events = proto.receive_data, proto.events_received
        got = []

        def feed_all(chunks):
            n = 0
            for c in chunks:
                receive(c)
                evs = events()
                n += len(evs)
                if evs:
                    got[:] = evs[-1:]
            return n

        return feed_all, lambda: got[-1].data

    return make


class _StubProtocol:
    """What WebSocketDataQueue needs of aiohttp's BaseProtocol."""

    _reading_paused = False

    def pause_reading(self) -> None:  # pragma: no cover - limit is never reached
        self._reading_paused = True

    def resume_reading(self) -> None:  # pragma: no cover
        self._reading_paused = False


def aiohttp_parser():
    from aiohttp._websocket.reader_c import WebSocketDataQueue, WebSocketReader

    def make():
        # limit is far above one stream's worth of messages, so the reader never
        # stalls or pauses; the deque is emptied after every chunk (what
        # ``await queue.read()`` would do, minus the coroutine).
        queue = WebSocketDataQueue(_StubProtocol(), 2**30, loop=None)
        reader = WebSocketReader(queue, 0, False, True)  # no size limit, no compression
        feed, buf = reader.feed_data, queue._buffer
        got = []

        def feed_all(chunks):
            n = 0
            for c in chunks:
                feed(c)
                if buf:
                    n += len(buf)
                    got[:] = [buf[-1]]
                    buf.clear()
            return n

        return feed_all, lambda: got[-1][0].data

    return make


def wsproto_parser():
    from wsproto.frame_protocol import FrameProtocol

    def make():
        fp = FrameProtocol(client=False, extensions=[])
        receive, frames = fp.receive_bytes, fp.received_frames
        got = []

        def feed_all(chunks):
            n = 0
            f = None
            for c in chunks:
                receive(c)
                # A frame cut by a chunk boundary arrives in pieces
                # (frame_finished False); count whole messages only.
                for f in frames():
                    if f.message_finished:
                        n += 1
            if f is not None:
                got[:] = [f]
            return n

        # The last piece only: a suffix of the last payload.
        return feed_all, lambda: bytes(got[-1].payload)

    return make


def parse_impls():
    impls = []
    if _codec_cy is not None:
        impls.append(("fastws cython FrameParser", fastws_parser(_codec_cy)))
    impls.append(("fastws python FrameParser", fastws_parser(_codec_py)))
    for name, factory in (
        ("websockets Protocol", websockets_parser),
        ("aiohttp WebSocketReader (C)", aiohttp_parser),
        ("wsproto FrameProtocol", wsproto_parser),
    ):
        try:
            impls.append((name, factory()))
        except ImportError:
            pass
    return impls


def bench_parsing(impls, frames_per_size, min_time, repeats, progress) -> dict:
    pc = time.perf_counter
    results: dict[str, dict[int, float]] = {name: {} for name, _ in impls}
    for size in PARSE_SIZES:
        count = frames_per_size[size]
        chunks, last_payload = build_stream(size, count)
        runs = {}
        for name, make in impls:
            feed_all, last = make()
            n = feed_all(chunks)
            tail = last()
            if n != count or not (tail == last_payload or (name.startswith("wsproto") and last_payload.endswith(tail))):
                raise SystemExit(f"parse self-check failed for {name} at {fmt_size(size)}: {n}/{count} messages")

            def run(loops, make=make, chunks=chunks):
                # Fresh parsers, built before the clock starts.
                parsers = [make()[0] for _ in range(loops)]
                t = pc()
                for feed_all in parsers:
                    feed_all(chunks)
                return pc() - t

            runs[name] = run
        for name, per_pass in best_times(runs, min_time, repeats, progress, f"parse {fmt_size(size):>7}").items():
            results[name][size] = count / per_pass  # messages/s
    return results


def print_parsing(results, frames_per_size) -> None:
    print("## Parsing throughput (messages/s; masked binary frames fed in 64 KiB chunks)\n")
    aio = results.get("aiohttp WebSocketReader (C)")
    ws = results.get("websockets Protocol")
    for size in PARSE_SIZES:
        print(f"### {fmt_size(size)} payload ({frames_per_size[size]} frames per stream)\n")
        rows = []
        for name, r in results.items():
            rate = r[size]
            rows.append(
                [
                    name,
                    fmt_rate(rate),
                    f"{rate * size / 1e6:.0f}",
                    fmt_ratio(rate / aio[size]) if aio else "n/a",
                    fmt_ratio(rate / ws[size]) if ws else "n/a",
                ]
            )
        print(table(["implementation", "msg/s", "payload MB/s", "× aiohttp", "× websockets"], rows))
        print()


# -- targets --------------------------------------------------------------------


def targets(mask_res, parse_res) -> list[tuple[str, str, str]]:
    out = []
    cy = mask_res.get("fastws cython apply_mask")
    memcpy = mask_res[next(iter(mask_res))]
    if cy:
        ratios = {s: cy[s] / memcpy[s] for s in MASK_SIZES if s >= KiB}
        worst = min(ratios, key=ratios.get)
        ok = all(r >= 0.9 for r in ratios.values())
        detail = ", ".join(f"{fmt_size(s)} {r:.2f}×" for s, r in ratios.items())
        out.append(
            (
                "Cython masking ≥ 0.9× memcpy from 1 KiB up",
                "PASS" if ok else "MISS",
                f"worst {ratios[worst]:.2f}× at {fmt_size(worst)} ({detail})",
            )
        )
    cyp = parse_res.get("fastws cython FrameParser")
    aio = parse_res.get("aiohttp WebSocketReader (C)")
    ws = parse_res.get("websockets Protocol")
    if cyp and aio:
        r = cyp[16] / aio[16]
        out.append(("Cython parsing ≥ 3× aiohttp reader at 16 B", "PASS" if r >= 3 else "MISS", f"{r:.2f}×"))
    if cyp and ws:
        r = cyp[64 * KiB] / ws[64 * KiB]
        out.append(("Cython parsing ≥ 3× websockets at 64 KiB", "PASS" if r >= 3 else "MISS", f"{r:.2f}×"))
    return out


class LoadMeter:
    """CPU time spent by other processes (and stolen by the hypervisor) while
    the benchmark ran, from /proc/stat: a noisy machine shows up here."""

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        hz = os.sysconf("SC_CLK_TCK")
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        steal = fields[7] if len(fields) > 7 else 0
        busy = sum(fields[:8]) - idle - steal
        t = os.times()
        return time.monotonic(), busy / hz, steal / hz, t.user + t.system

    def report(self) -> str:
        end = self._sample()
        if self.start is None or end is None:
            return "n/a"
        wall = end[0] - self.start[0]
        other = (end[1] - self.start[1]) - (end[3] - self.start[3])
        steal = end[2] - self.start[2]
        return (
            f"other processes used {max(other, 0) / wall:.0%} of a core on average, "
            f"hypervisor steal {steal / wall:.0%} of a core (over {wall:.0f} s)"
        )


# -- main -----------------------------------------------------------------------


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def machine() -> dict:
    cpu = cpu_model()
    versions = {}
    for mod in ("pyfastws", "websockets", "aiohttp", "wsproto", "wsaccel"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod)
        except Exception:
            versions[mod] = "not installed"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "versions": versions,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer, shorter runs (< 30 s)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()

    min_time, repeats = (0.04, 2) if args.quick else (0.2, 5)
    frames = PARSE_FRAMES_QUICK if args.quick else PARSE_FRAMES

    m = machine()
    print("# fastws codec benchmark\n")
    print(f"- date: {m['date']}")
    print(f"- CPU: {m['cpu']} ({m['cores']} cores, {m['usable_cores']} usable)")
    print(f"- Python: {m['python']} on {m['platform']}")
    print("- versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()))
    print(
        f"- timing: best of {repeats} runs of ≥ {min_time} s each, gc disabled" + (" (--quick)" if args.quick else "")
    )
    if _codec_cy is None:
        print("- **fastws._codec (Cython) is not built: Cython rows skipped**")
    print()
    sys.stdout.flush()

    meter = LoadMeter()
    m_impls = mask_impls()
    p_impls = parse_impls()
    check_masks(m_impls)
    progress = Progress(len(m_impls) * len(MASK_SIZES) + len(p_impls) * len(PARSE_SIZES))
    mask_res = bench_masking(m_impls, min_time, repeats, progress)
    parse_res = bench_parsing(p_impls, frames, min_time, repeats, progress)
    progress.close()
    m["load"] = f"{meter.report()}; load average at the end {load_average()}"
    print(f"- load during the run: {m['load']}")
    print()

    print_masking(mask_res)
    print_parsing(parse_res, frames)
    tg = targets(mask_res, parse_res)
    print("## Targets\n")
    print(table(["target", "result", "measured"], [list(t) for t in tg], left=3))
    print()

    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": m,
                    "quick": args.quick,
                    "min_time": min_time,
                    "repeats": repeats,
                    "masking_bytes_per_s": {k: {str(s): v for s, v in r.items()} for k, r in mask_res.items()},
                    "parsing_msgs_per_s": {k: {str(s): v for s, v in r.items()} for k, r in parse_res.items()},
                    "parse_frames_per_stream": {str(k): v for k, v in frames.items()},
                    "targets": [{"target": a, "result": b, "measured": c} for a, b, c in tg],
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
