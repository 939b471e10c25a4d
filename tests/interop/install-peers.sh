#!/usr/bin/env bash
# Install the peers of the interop tests (tests/interop): Debian's Chromium,
# redis-server, tinyproxy and microsocks, and Node's ws (pinned in tests/interop/node/package-lock.json).
# Node.js itself comes from Debian if the machine has none. Idempotent,
# non-interactive and bounded;
# apt-get needs root. Run before pytest (.ci/run does).
set -euo pipefail

NODE_DIR="$(cd "$(dirname "$0")" && pwd)/node"
export DEBIAN_FRONTEND=noninteractive

installed() {  # installed DEBIAN_PACKAGE
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'
}

missing=()
installed chromium || missing+=(chromium)
installed redis-server || missing+=(redis-server)  # the relay's backplane tests
installed tinyproxy || missing+=(tinyproxy)  # the client's HTTP CONNECT proxy tests
installed microsocks || missing+=(microsocks)  # the client's SOCKS5 proxy tests
if ! command -v node >/dev/null; then missing+=(nodejs); fi
if ! command -v npm >/dev/null; then missing+=(npm); fi

if ((${#missing[@]})); then
    echo "install-peers: apt-get install ${missing[*]}"
    timeout 600 apt-get update -q
    timeout 1200 apt-get install -y -q -o Dpkg::Options::=--force-confold "${missing[@]}"
fi

# npm ci reinstalls from scratch; skip it while node_modules matches the lock.
cd "$NODE_DIR"
if [[ node_modules/.package-lock.json -nt package-lock.json && node_modules/.package-lock.json -nt package.json ]] &&
    node -e "require('ws')" 2>/dev/null; then
    echo "install-peers: node modules up to date"
else
    # Install scripts are not needed: bufferutil loads a bundled prebuilt binary,
    # and ws works without it where there is none.
    npm_flags=(--no-audit --no-fund --ignore-scripts --loglevel=error)
    if [[ -f package-lock.json ]]; then
        timeout 300 npm ci "${npm_flags[@]}"
    else
        timeout 300 npm install "${npm_flags[@]}"
    fi
fi

echo "install-peers: chromium $(dpkg-query -W -f='${Version}' chromium)," \
    "redis-server $(dpkg-query -W -f='${Version}' redis-server)," \
    "tinyproxy $(dpkg-query -W -f='${Version}' tinyproxy), microsocks $(dpkg-query -W -f='${Version}' microsocks)," \
    "node $(node --version)," \
    "ws $(node -p "require('ws/package.json').version")"
