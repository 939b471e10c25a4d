"""The command line of ``fastws bench``: ``add_arguments()`` declares its
options on a parser, ``run()`` runs it from the parsed arguments."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

from .._fdlimit import raise_fd_limit
from .client import MODES, Bench
from .report import BenchResult, import_pyplot, plot

__all__ = ["add_arguments", "run"]

# Descriptors besides the connections: stdio, the event loop's, a plot's file.
FD_MARGIN = 32


def _parse_size(text: str) -> list[int]:
    sizes = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        scale = 1
        for suffix, factor in (("kib", 1024), ("mib", 1 << 20), ("k", 1024), ("m", 1 << 20), ("b", 1)):
            if part.endswith(suffix):
                part, scale = part[: -len(suffix)], factor
                break
        try:
            value = int(float(part) * scale)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad size {text!r} (examples: 256, 8k, 1m, 256,8192)") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"bad size {text!r}")
        sizes.append(value)
    if not sizes:
        raise argparse.ArgumentTypeError(f"bad size {text!r}")
    return sizes


def _parse_duration(text: str) -> float:
    value = text.strip().lower()
    scale = 1.0
    for suffix, factor in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if value.endswith(suffix):
            value, scale = value[: -len(suffix)], factor
            break
    try:
        seconds = float(value) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad duration {text!r} (examples: 10, 2.5s, 1m)") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("duration must be positive")
    return seconds


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``fastws bench``."""
    parser.description = (
        "Load a WebSocket echo server and report throughput and latency percentiles. "
        "Modes: roundtrip (send, wait for the echo, repeat), pipelined (--window messages in flight "
        "per connection), rate (open loop: --rate msg/s at fixed times; latency is measured from "
        "the scheduled send time, so stalls are not hidden)."
    )
    parser.add_argument("uri", help="ws:// or wss:// URI of an echo server")
    parser.add_argument("-c", "--connections", type=_positive_int, default=1, help="connections (default 1)")
    parser.add_argument(
        "-d", "--duration", type=_parse_duration, help="seconds to measure: 10, 2.5s, 1m (default 10 without -n)"
    )
    parser.add_argument("-n", "--messages", type=_positive_int, help="stop after this many echoes in total")
    parser.add_argument(
        "-s",
        "--size",
        type=_parse_size,
        action="append",
        metavar="BYTES",
        help="message size; repeat or comma-separate to cycle sizes: -s 256,8k (default 256)",
    )
    parser.add_argument("--text", action="store_true", help="send text messages (default binary)")
    parser.add_argument("--mode", choices=MODES, help="load pattern (default roundtrip, or rate with --rate)")
    parser.add_argument(
        "--window", type=_positive_int, default=16, help="pipelined: messages in flight per connection (16)"
    )
    parser.add_argument("--rate", type=_positive_float, help="rate mode: messages per second over all connections")
    parser.add_argument("--warmup", type=float, default=0.0, metavar="SECONDS", help="load before measuring")
    parser.add_argument("--verify", action="store_true", help="compare echo contents, not only type and size")
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="offer permessage-deflate (off by default; the payloads are repetitive, so they compress well)",
    )
    parser.add_argument(
        "--coarse-timer",
        action="store_true",
        help="rate mode: sleep on the event loop's ~1 ms timer instead of spinning the last millisecond "
        "before each send (less CPU; latencies may read up to ~1 ms high)",
    )
    parser.add_argument("--uvloop", action="store_true", help="run the client on uvloop")
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.add_argument("--plot", metavar="FILE.png", help="write throughput and latency plots (needs matplotlib)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress line on stderr")


def run(args: argparse.Namespace) -> int:
    """Run ``fastws bench`` from parsed arguments; 0 if every echo came back intact."""
    mode = args.mode or ("rate" if args.rate is not None else "roundtrip")
    if mode == "rate" and args.rate is None:
        print("fastws bench: error: --mode rate needs --rate MSGS_PER_SECOND", file=sys.stderr)
        return 2
    if mode != "rate" and args.rate is not None:
        print("fastws bench: error: --rate is for --mode rate", file=sys.stderr)
        return 2
    if args.plot:
        try:
            import_pyplot()
        except RuntimeError as exc:
            print(f"fastws bench: error: {exc}", file=sys.stderr)
            return 2
    sizes = [size for group in (args.size or [[256]]) for size in group]
    # One descriptor per connection: raise the soft limit (often 1024) as far
    # as the hard one allows, or say so before connecting rather than fail midway.
    needed = args.connections + FD_MARGIN
    soft, _ = raise_fd_limit(needed)
    if soft < needed:
        print(
            f"fastws bench: error: {args.connections} connections need about {needed} open files; "
            f"the limit is {soft} (ulimit -n)",
            file=sys.stderr,
        )
        return 2

    async def main() -> BenchResult:
        runner = Bench(
            args.uri,
            connections=args.connections,
            duration=args.duration,
            messages=args.messages,
            sizes=sizes,
            binary=not args.text,
            mode=mode,
            window=args.window,
            rate=args.rate,
            progress=not args.quiet,
            warmup=args.warmup,
            verify=args.verify,
            deflate=args.deflate,
            precise_timer=not args.coarse_timer,
        )
        loop = asyncio.get_running_loop()
        try:
            loop.add_signal_handler(signal.SIGINT, runner.stop)
        except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
            pass
        try:
            return await runner.run()
        finally:
            try:
                loop.remove_signal_handler(signal.SIGINT)
            except (NotImplementedError, RuntimeError, ValueError):
                pass

    try:
        if args.uvloop:
            try:
                import uvloop
            except ImportError:
                print("fastws bench: error: --uvloop needs uvloop: pip install uvloop", file=sys.stderr)
                return 2
            result = uvloop.run(main()) if hasattr(uvloop, "run") else _run_with_policy(uvloop, main)
        else:
            result = asyncio.run(main())
    except (OSError, ValueError, TimeoutError) as exc:
        print(f"fastws bench: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # e.g. InvalidStatus from the handshake
        print(f"fastws bench: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(result.to_json())
    else:
        print(result.summary())
    if args.plot:
        plot(result, args.plot)
        print(f"plot written to {os.path.abspath(args.plot)}", file=sys.stderr)
    healthy = result.messages > 0 and result.errors == 0 and result.unexpected_closes == 0
    return 0 if healthy else 1


def _run_with_policy(uvloop: Any, main: Any) -> BenchResult:
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    try:
        return asyncio.run(main())
    finally:
        asyncio.set_event_loop_policy(None)
