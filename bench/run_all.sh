#!/usr/bin/env bash
# The whole benchmark suite in one command, from the repository root or anywhere:
#
#   bash bench/run_all.sh            # full run (~27 min on 2 cores)
#   bash bench/run_all.sh --quick    # smoke run (~8 min)
#   PYTHON=/path/to/python bash bench/run_all.sh
#   FASTWS_BENCH_RESULTS=/tmp/results bash bench/run_all.sh --quick   # elsewhere than bench/results
#
# 1. installs fastws with the benchmark peers (pip install -e '.[bench]': picows,
#    aiohttp, websockets, wsproto, wsaccel, uvloop) and Node ws + bufferutil (npm ci);
# 2. the codec micro-benchmarks (bench_codec.py) and the Python twin against
#    websockets without its C extension (bench_twin.py);
# 3. end-to-end echo (bench_echo.py): servers and clients against picows, aiohttp,
#    websockets and Node ws, with server CPU per echo and each client's own CPU;
# 4. pub/sub fan-out (bench_fanout.py: fastws relay vs websockets.broadcast vs picows);
# 5. permessage-deflate round trips (bench_compression.py), memory per idle
#    connection (bench_memory.py), TLS (bench_tls.py), the threaded client
#    (bench_sync.py) and uvicorn (bench_uvicorn.py).
#
# Reports go to bench/results/: a .md table (command, machine, date, ratios) per
# benchmark, .json where the benchmark keeps raw numbers, and echo.png (chart).
# Every argument goes to bench_echo.py (see its --help); --quick also to the others
# that have a quick mode. A benchmark that fails is reported at the end; the others
# still run.
set -euo pipefail

quick=()
for arg in "$@"; do
    if [ "$arg" = "--quick" ]; then quick=(--quick); fi
done

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
RESULTS="${FASTWS_BENCH_RESULTS:-bench/results}"  # another directory keeps the committed results
mkdir -p "$RESULTS"

echo "== installing fastws and the benchmark peers" >&2
"$PYTHON" -m pip install --quiet -e '.[bench]' matplotlib >&2
if command -v npm >/dev/null 2>&1; then
    # bufferutil ships prebuilt binaries: no install scripts needed (nor network fetches besides the registry).
    (cd bench/node && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >&2
else
    echo "npm not found: the Node ws server will be skipped" >&2
fi

status=0
failed=()
run() {  # run NAME COMMAND...: one benchmark; a failure is noted, not fatal
    local name="$1"
    shift
    echo "== $name" >&2
    if ! "$@"; then
        status=1
        failed+=("$name")
    fi
}
export FASTWS_BENCH_COMMAND="bash bench/run_all.sh${*:+ $*}"

run "codec micro-benchmarks" bash -c '"$0" bench/bench_codec.py "${@:2}" --json "$1/codec.json" > "$1/codec.md"' \
    "$PYTHON" "$RESULTS" "${quick[@]}"
run "the Python twin" "$PYTHON" bench/bench_twin.py "${quick[@]}" --output "$RESULTS/twin.md"
run "end-to-end echo" bash -c '"$0" bench/bench_echo.py "${@:2}" --json "$1/echo.json" --plot "$1/echo.png" > "$1/echo.md"' \
    "$PYTHON" "$RESULTS" "$@"
run "pub/sub fan-out" "$PYTHON" bench/bench_fanout.py "${quick[@]}" --output "$RESULTS"
run "permessage-deflate" bash -c '"$0" bench/bench_compression.py "${@:2}" --json "$1/compression.json" > "$1/compression.md"' \
    "$PYTHON" "$RESULTS" "${quick[@]}"
run "memory per connection" bash -c '"$0" bench/bench_memory.py "${@:2}" --json "$1/memory.json" > "$1/memory.md"' \
    "$PYTHON" "$RESULTS" "${quick[@]}"
if [ ${#quick[@]} -gt 0 ]; then
    run "TLS" "$PYTHON" bench/bench_tls.py --duration 0.5 --rounds 1 --output "$RESULTS/tls.md"
    run "threaded client" "$PYTHON" bench/bench_sync.py --duration 0.5 --rounds 1 --output "$RESULTS/sync.md"
else
    run "TLS" "$PYTHON" bench/bench_tls.py --output "$RESULTS/tls.md"
    run "threaded client" "$PYTHON" bench/bench_sync.py --output "$RESULTS/sync.md"
fi
run "uvicorn" "$PYTHON" bench/bench_uvicorn.py "${quick[@]}"

echo "reports in $RESULTS/: codec twin echo fanout compression memory tls sync uvicorn (.md), raw .json, echo.png" >&2
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]}" >&2
fi
exit "$status"
