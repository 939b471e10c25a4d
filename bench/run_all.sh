#!/usr/bin/env bash
# The whole benchmark suite in one command, from the repository root or anywhere:
#
#   bash bench/run_all.sh            # full run (~20 min on 2 cores)
#   bash bench/run_all.sh --quick    # smoke run (~2 min)
#   PYTHON=/path/to/python bash bench/run_all.sh
#
# 1. installs fastws with the benchmark peers (pip install -e '.[bench]': picows,
#    aiohttp, websockets, wsproto, wsaccel, uvloop) and Node ws + bufferutil (npm ci);
# 2. runs the codec micro-benchmarks (bench/bench_codec.py);
# 3. runs the end-to-end echo benchmark (bench/bench_echo.py);
# 4. runs the pub/sub fan-out benchmark (bench/bench_fanout.py: fastws relay vs websockets.broadcast vs picows).
#
# Reports go to bench/results/: codec.md, codec.json, echo.md, echo.json, echo.png, fanout.md, fanout.json.
# Every argument goes to bench_echo.py (see its --help); --quick also to bench_codec.py and bench_fanout.py.
set -euo pipefail

codec_args=()
for arg in "$@"; do
    if [ "$arg" = "--quick" ]; then codec_args+=(--quick); fi
done

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
RESULTS=bench/results
mkdir -p "$RESULTS"

echo "== installing fastws and the benchmark peers" >&2
"$PYTHON" -m pip install --quiet -e '.[bench]' matplotlib >&2
if command -v npm >/dev/null 2>&1; then
    # bufferutil ships prebuilt binaries: no install scripts needed (nor network fetches besides the registry).
    (cd bench/node && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error) >&2
else
    echo "npm not found: the Node ws server will be skipped" >&2
fi

echo "== codec micro-benchmarks" >&2
"$PYTHON" bench/bench_codec.py "${codec_args[@]}" --json "$RESULTS/codec.json" | tee "$RESULTS/codec.md"

echo "== end-to-end echo benchmark" >&2
status=0
FASTWS_BENCH_COMMAND="bash bench/run_all.sh${*:+ $*}" "$PYTHON" bench/bench_echo.py "$@" --json "$RESULTS/echo.json" --plot "$RESULTS/echo.png" \
    | tee "$RESULTS/echo.md" || status=$?
echo "== pub/sub fan-out benchmark" >&2
FASTWS_BENCH_COMMAND="bash bench/run_all.sh${*:+ $*}" "$PYTHON" bench/bench_fanout.py "${codec_args[@]}" \
    --output "$RESULTS" || status=$?
echo "reports in $RESULTS/: codec.md echo.md fanout.md (tables), codec.json echo.json fanout.json (raw), echo.png (chart)" >&2
exit "$status"
