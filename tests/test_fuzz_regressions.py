"""The fuzz harnesses in fuzz/, in CI: each runs for a bounded time and must find
no crash; their seeds and the reproducers kept below run through the same
checks without atheris.

FASTWS_FUZZ_SECONDS sets the time per harness (default 25 s; five runs). To fuzz
for longer by hand, see fuzz/README.md.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ_DIR = Path(__file__).resolve().parent.parent / "fuzz"
SECONDS = int(os.environ.get("FASTWS_FUZZ_SECONDS", "25"))
HAS_EXTENSION = importlib.util.find_spec("fastws._codec") is not None and not os.environ.get("FASTWS_NO_EXTENSIONS")

# (harness, backend or None, needs the compiled extension)
HARNESSES = [
    ("fuzz_frames.py", "python", False),
    ("fuzz_frames.py", "cython", True),
    ("fuzz_differential.py", None, True),
    ("fuzz_handshake.py", None, False),
    ("fuzz_serialize.py", None, False),
]


def harness(name: str):
    """Import a harness module from fuzz/ (its atheris instrumentation is a no-op
    here: fastws is already imported)."""
    if str(FUZZ_DIR) not in sys.path:
        sys.path.insert(0, str(FUZZ_DIR))
    return importlib.import_module(name)


@pytest.mark.slow  # 25 s per harness
@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed")
@pytest.mark.skipif(
    bool(os.environ.get("FASTWS_CODEC")),
    reason="the harnesses pick their backends themselves; already run without FASTWS_CODEC",
)
@pytest.mark.parametrize(
    "script, backend, needs_extension", HARNESSES, ids=[f"{s[:-3]}-{b or 'both'}" for s, b, _ in HARNESSES]
)
def test_fuzzer_finds_no_crash(script, backend, needs_extension, tmp_path):
    if needs_extension and not HAS_EXTENSION:
        pytest.skip("the compiled codec is not built")
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    command = [
        sys.executable,
        str(FUZZ_DIR / script),
        f"--corpus={tmp_path / 'corpus'}",
        f"-max_total_time={SECONDS}",
        "-runs=5000000",
        "-max_len=4096",
        "-timeout=20",
        "-rss_limit_mb=2048",
        f"-artifact_prefix={artifacts}/",
    ]
    if backend:
        command.append(f"--backend={backend}")
    env = dict(os.environ, FASTWS_FUZZ_BACKEND=backend or "cython")
    env.pop("FASTWS_CODEC", None)
    log = tmp_path / "fuzz.log"
    with log.open("wb") as output:
        result = subprocess.run(
            command, cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT, timeout=SECONDS + 120
        )
    found = sorted(artifacts.iterdir())
    text = log.read_text(errors="replace")
    assert "Done" in text or result.returncode != 0, text[-3000:]
    report = "\n".join(f"{path.name}: {path.read_bytes()!r}" for path in found)
    assert result.returncode == 0 and not found, f"exit {result.returncode}\n{report}\n{text[-6000:]}"


# -- seeds and reproducers, replayed without atheris ---------------------------------------

FRAME_BACKENDS = ["python", "cython"] if HAS_EXTENSION else ["python"]


def header(**options) -> bytes:
    return harness("fuzzlib").Options.encode(**options)


# Inputs for fuzz_frames / fuzz_differential (option header + stream): edge cases
# of the parser, kept so that every run checks them in every chunking.
MASK = b"\x00\x00\x00\x00"
FRAME_REPRODUCERS = [
    # A surrogate (ED A0 80) split across feeds: rejected at its second byte.
    header(chunk_sizes=[7, 1, 1]) + b"\x81\x83" + MASK + b"\xed\xa0\x80",
    # A 2^63-1 length arriving one byte at a time, with and without a limit.
    header(chunk_sizes=[1]) + b"\x82\xff" + (2**63 - 1).to_bytes(8, "big") + MASK + b"abc",
    header(chunk_sizes=[1], max_message=(2, 0)) + b"\x82\xff" + (2**63).to_bytes(8, "big") + MASK,
    # A close reason whose UTF-8 is cut by the chunking, then an invalid one.
    header(chunk_sizes=[9]) + b"\x88\x84" + MASK + b"\x03\xe8\xc3\xa9" + b"\x88\x83" + MASK + b"\x03\xe8\xc3",
    # A control frame inside a fragmented text message cut mid-character, at the limit.
    header(max_message=(3, 4), chunk_sizes=[3, 0, 5])
    + b"\x01\x82"
    + MASK
    + b"\xe2\x82"
    + b"\x89\x80"
    + MASK
    + b"\x80\x84"
    + MASK
    + b"\xac\xac\xac\xac",
    # Frame mode with a frame limit, RSV1 allowed, from a server (unmasked).
    header(is_client=True, assemble=False, rsv1_allowed=True, max_frame=(2, 3), chunk_sizes=[2])
    + b"\xc1\x03abc\x00\x04abcd",
    # Empty feeds between every byte, as a memoryview.
    header(chunk_sizes=[0, 1], input_type="memoryview") + b"\x89\x80" + MASK + b"\x8a\x80" + MASK,
]

HANDSHAKE_REPRODUCERS = [
    # Offers with quoted, repeated and malformed parameters.
    b"\x00\x00GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits="8"; server_max_window_bits=8\r\n'
    b'Sec-WebSocket-Extensions: permessage-deflate;;, permessage-deflate; a="b,c\r\n\r\n\x00\x00\xff\xff',
    # A head split one byte at a time, past a small limit.
    b"\x10\x01" + b"GET / HTTP/1.1\r\nX: " + b"a" * 300 + b"\r\n\r\n",
    # A 101 answer whose accept value is right, with an unexpected extension.
    b"\x01\x03HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\nSec-WebSocket-Accept: @KEY@\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16\r\n\r\n",
]


@pytest.mark.parametrize("backend", FRAME_BACKENDS)
def test_frame_seeds_and_reproducers_pass_the_frame_harness(backend):
    module = harness("fuzz_frames")
    module.CODEC = harness("fuzzlib").codec_module(backend)
    for data in list(harness("fuzzseeds").frame_seeds()) + FRAME_REPRODUCERS:
        module.test_one_input(data)


@pytest.mark.skipif(not HAS_EXTENSION, reason="the compiled codec is not built")
def test_seeds_and_reproducers_pass_the_differential_harness():
    module = harness("fuzz_differential")
    for data in list(module.seeds()) + FRAME_REPRODUCERS:
        module.test_one_input(data)


def test_seeds_and_reproducers_pass_the_handshake_harness():
    module = harness("fuzz_handshake")
    for data in list(module.seeds()) + HANDSHAKE_REPRODUCERS:
        module.test_one_input(data)


def serialize_input(route: int, status: int, pieces, **options) -> bytes:
    return harness("fuzz_serialize").encode(route, status, pieces, **options)


# Inputs for fuzz_serialize (route, status, pieces): injections that must be refused
# with the header named, and legal oddities that must survive the round trip.
SERIALIZE_REPRODUCERS = [
    # Response splitting through a header value, a reason phrase, a status.
    serialize_input(0, 200, ["OK", "X-Test", "a\r\nSet-Cookie: evil=1"]),
    serialize_input(0, 200, ["OK\r\nSet-Cookie: evil=1"]),
    serialize_input(5, 2000, ["OK"], options=2),
    # A client's extra header, path and subprotocol list.
    serialize_input(3, 0, ["h", "/", "", "", "X", "a\r\nEvil: 1"]),
    serialize_input(3, 0, ["h", "/x HTTP/1.1\r\nEvil: 1\r\n\r\nGET /", "", ""]),
    serialize_input(3, 0, ["h", "/", "", "", "chat, admin"], options=1),
    # Offers the server parsed, offered back: a non-token subprotocol, an
    # extension list ending in an empty element (its ", " is dropped).
    serialize_input(3, 0, ["h", "/", "", "x, ", "cha\xd6"], options=1),
    # An extension hook answering with an injection: 500, nothing of the 101 sent.
    serialize_input(4, 0, ["permessage-deflate\r\nSet-Cookie: a=1", "chat", "", "chat"]),
    # Whitespace around values, obs-text, a value of SP and HTAB only.
    serialize_input(7, 0, ["X-A", " \tcaf\xe9\t ", "X-B", " \t ", "X-C", "\x80\xff"]),
    # Characters above U+00FF in a name, a value, a target.
    serialize_input(1, 0, ["GET", "/\u20ac", "HTTP/1.1", "X-\u20ac", "v"], utf8=True),
]


def test_seeds_and_reproducers_pass_the_serialize_harness():
    module = harness("fuzz_serialize")
    for data in list(module.seeds()) + SERIALIZE_REPRODUCERS:
        module.test_one_input(data)
