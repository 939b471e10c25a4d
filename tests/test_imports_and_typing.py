"""What importing fastws costs and what mypy sees.

The codec and the sans-I/O core must import without asyncio (another event
loop, a thread, or a server in C can drive them); the top-level asyncio names
are loaded on first use. ``fastws.codec`` binds its names at run time from the
selected backend, but mypy must still type them from ``_codec.pyi``.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import textwrap

import pytest

import fastws
from fastws import _codec_py, _rules, frames


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("module", ["fastws", "fastws.codec", "fastws.connection", "fastws.frames", "fastws._codec_py"])
def test_importing_does_not_load_asyncio(module):
    result = run_python(
        f"import sys, {module}\n"
        "loaded = sorted(m for m in sys.modules if m == 'asyncio' or m.startswith(('asyncio.', 'fastws.asyncio')))\n"
        "assert not loaded, loaded"
    )
    assert result.returncode == 0, result.stderr


def test_asyncio_names_load_on_first_use():
    result = run_python(
        "import sys, fastws\n"
        "assert 'fastws.asyncio' not in sys.modules\n"
        "serve = fastws.serve\n"
        "assert 'fastws.asyncio' in sys.modules\n"
        "import fastws.asyncio\n"
        "assert serve is fastws.asyncio.serve and fastws.Limits is fastws.asyncio.Limits"
    )
    assert result.returncode == 0, result.stderr


def test_every_public_name_resolves():
    assert "broadcast" in fastws.__all__
    missing = []
    for name in fastws.__all__:
        try:
            getattr(fastws, name)
        except AttributeError:
            missing.append(name)
    # fastws.asyncio.broadcast is being written alongside this change; every
    # other name must exist.
    assert set(missing) <= {"broadcast"}, missing
    assert set(fastws.__all__) <= set(dir(fastws))
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        fastws.nonexistent  # noqa: B018


def test_star_import_gives_the_asyncio_names():
    namespace: dict = {}
    exec("from fastws import *", namespace)
    assert namespace["connect"] is fastws.connect
    assert namespace["WebSocket"] is fastws.WebSocket


def test_rules_are_defined_once_and_shared():
    """frames, the Python twin and the compiled codec all use _rules' values."""
    assert (frames.OP_CONT, frames.OP_TEXT, frames.OP_BINARY) == (0, 1, 2)
    assert (frames.OP_CLOSE, frames.OP_PING, frames.OP_PONG) == (8, 9, 10)
    for name in ("CONTINUATION", "TEXT", "BINARY", "CLOSE", "PING", "PONG"):
        value = getattr(frames.Opcode, name)
        assert type(getattr(frames, "OP_" + ("CONT" if name == "CONTINUATION" else name))) is int
        assert value in _rules.OPCODES
    assert frames.is_valid_close_code is _rules.is_valid_close_code
    assert frames.MAX_FRAME_SIZE is _rules.MAX_FRAME_SIZE
    assert _codec_py._MAX_MESSAGE_SIZE is _rules.MAX_MESSAGE_SIZE


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_codec_is_typed_for_mypy(tmp_path):
    program = tmp_path / "user.py"
    program.write_text(
        textwrap.dedent(
            """
            import fastws
            import fastws.codec

            data = fastws.codec.encode_message(2, b"x", mask=True)
            reveal_type(data)
            reveal_type(fastws.codec.FrameParser(assemble=False).feed(data)[0].payload)
            reveal_type(fastws.connect)
            wrong: int = fastws.codec.encode_frame(1, "x")
            fastws.codec.encode_message("text", b"x")
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), str(program)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    # mypy 1.x (the last on Python 3.9) writes builtins.bytes and Union[a, b]: spell them as mypy 2 does
    out = re.sub(r"Union\[(\w+), (\w+)\]", r"\1 | \2", result.stdout.replace("builtins.", ""))
    assert 'Revealed type is "bytes"' in out, out
    assert 'Revealed type is "bytes | str"' in out, out
    assert "fastws.asyncio.client" in out, out  # connect is typed, not Any
    assert 'expression has type "bytes", variable has type "int"' in out, out
    assert 'Argument 1 to "encode_message" has incompatible type "str"; expected "int"' in out, out
    assert "Found 2 errors in 1 file" in out, out
