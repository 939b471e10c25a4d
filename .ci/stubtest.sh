#!/usr/bin/env bash
# Hold both codec backends to their one interface, src/fastws/_codec.pyi, with
# mypy.stubtest: the compiled fastws._codec, and the pure-Python twin
# fastws._codec_py. Run from anywhere, with fastws installed (editable or not).
set -euo pipefail
cd "$(dirname "$0")/.."

# The compiled codec against the stub shipped beside it.
python -m mypy.stubtest fastws._codec --allowlist .ci/stubtest-allowlist.txt

# stubtest checks a module against the stub of the same name, so the twin is
# checked against a copy of _codec.pyi named _codec_py.pyi, in a stub-only
# fastws package put first on mypy's search path. It needs no allowlist. The
# copy drops @disjoint_base: the twin's classes are disjoint bases through their
# __slots__ (PEP 800), which stubtest wants stated as __slots__, not a decorator.
stubs="$(mktemp -d)"
trap 'rm -rf "$stubs"' EXIT
mkdir "$stubs/fastws"
: >"$stubs/fastws/__init__.pyi"
sed 's/^@disjoint_base$//' src/fastws/_codec.pyi >"$stubs/fastws/_codec_py.pyi"
MYPYPATH="$stubs" python -m mypy.stubtest fastws._codec_py
