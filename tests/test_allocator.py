"""The ``fastws`` command keeps freed memory for reuse (``fastws._allocator``);
importing fastws does not. Each case runs in its own interpreter: the
allocator's settings are per process."""

from __future__ import annotations

import json
import os
import pathlib
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")

BLOCK = 3 << 20  # above glibc's adaptive mmap threshold after start-up, below fastws's 4 MiB
BLOCKS = 4

PROBE = f"""
import json, sys
import fastws
from fastws._allocator import heap_usage, retain_freed_memory

applied = retain_freed_memory() if sys.argv[1] == "retain" else None
blocks = [bytearray({BLOCK}) for _ in range({BLOCKS})]
mmapped_while_live = heap_usage().mmapped
del blocks
print(json.dumps({{"applied": applied, "mmapped": mmapped_while_live, "kept": heap_usage().free}}))
"""


def probe(mode: str, **env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if k not in ("FASTWS_MALLOC", "GLIBC_TUNABLES")}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], env={**environ, **env}, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_importing_fastws_leaves_the_allocator_alone():
    result = probe("import only")
    assert result["mmapped"] >= BLOCKS * BLOCK  # each block its own mmap, as glibc does by default
    assert result["kept"] < BLOCK  # and given back when freed


def test_retained_memory_is_kept_for_the_next_allocations():
    result = probe("retain")
    assert result["applied"] is True
    assert result["mmapped"] < BLOCK  # the blocks came from the heap
    assert result["kept"] >= BLOCKS * BLOCK  # and stay there, free, once released


@pytest.mark.parametrize(
    "env", [{"FASTWS_MALLOC": "default"}, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1000000"}]
)
def test_the_user_can_keep_glibcs_defaults(env):
    result = probe("retain", **env)
    assert result["applied"] is False
    assert result["mmapped"] >= BLOCKS * BLOCK


def test_the_fastws_command_retains_freed_memory():
    code = "import fastws.__main__ as m; m.retain_freed_memory = lambda: print('applied'); m.main(['-h'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("applied")


def test_the_documented_environment_variable_has_the_same_effect():
    """GLIBC_TUNABLES as docs/cli.md gives it (for programs fastws does not
    start, and the benchmarks' processes) is the constant, and glibc applies
    it as retain_freed_memory() does."""
    from fastws._allocator import GLIBC_TUNABLES

    docs = (pathlib.Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    assert f"`GLIBC_TUNABLES={GLIBC_TUNABLES}`" in docs
    result = probe("import only", GLIBC_TUNABLES=GLIBC_TUNABLES)
    assert result["mmapped"] < BLOCK
    assert result["kept"] >= BLOCKS * BLOCK
