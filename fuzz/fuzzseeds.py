"""Seed inputs for the frame harnesses: valid and broken streams under varied options."""

from __future__ import annotations

from fuzzlib import Options


def _streams():
    from fastws import _codec_py as codec

    def frame(opcode, payload, mask, **kw):
        return codec.encode_frame(opcode, payload, mask=mask, mask_key=b"\x12\x34\x56\x78" if mask else None, **kw)

    def message(opcode, payload, mask, size):
        key = b"\x9a\xbc\xde\xf0" if mask else None
        return codec.encode_message(opcode, payload, mask=mask, max_frame_size=size, mask_key=key)

    for mask in (True, False):
        yield mask, frame(1, "hello", mask) + frame(2, b"\x00\xff" * 3, mask)
        yield mask, message(1, "é€😀 fragmented text", mask, 3) + frame(8, b"\x03\xe8bye", mask)
        yield mask, frame(1, "frag", mask, fin=False) + frame(9, b"ping", mask) + frame(0, "ment", mask)
        yield mask, frame(10, b"pong", mask) + frame(8, b"", mask)
        yield mask, frame(2, bytes(300), mask) + frame(2, b"x" * 130, mask)
        yield mask, frame(1, "compressed", mask, rsv1=True)
        yield mask, frame(1, b"\xed\xa0\x80", mask)  # surrogate: invalid UTF-8
        yield mask, frame(1, b"\xce", mask)  # truncated sequence
        yield mask, frame(8, b"\x03\xed", mask)  # close code 1005 on the wire
        yield mask, frame(8, b"\x03\xe8\xff", mask)  # close reason not UTF-8
        yield mask, frame(8, b"\x03", mask)  # 1-byte close payload
        huge = bytes([0x82, 0xFF if mask else 0x7F]) + (2**63 - 1).to_bytes(8, "big")
        yield mask, huge + (b"abcd" if mask else b"") + b"data"
        yield mask, bytes([0x83, 0x80 if mask else 0]) + (b"\0" * 4 if mask else b"")  # reserved opcode
        yield mask, frame(0, "orphan continuation", mask)


def frame_seeds():
    option_sets = [
        dict(),
        dict(assemble=False),
        dict(rsv1_allowed=True, chunk_sizes=[1]),
        dict(max_message=(1, 100), chunk_sizes=[3, 0, 7]),
        dict(assemble=False, max_frame=(2, 50), chunk_sizes=[2, 5]),
        dict(max_message=(2, 0), input_type="memoryview", chunk_sizes=[200]),
        dict(max_message=(3, 10), input_type="bytearray", chunk_sizes=[1, 1, 13]),
    ]
    for index, (masked, stream) in enumerate(_streams()):
        for options in option_sets[index % 3 :: 3] + [option_sets[0]]:
            yield Options.encode(is_client=not masked, **options) + stream
