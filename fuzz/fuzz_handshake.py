"""Fuzzing of the opening handshake and permessage-deflate negotiation.

    python fuzz/fuzz_handshake.py -max_total_time=60 --corpus=/tmp/corpus-handshake

Byte 0 of the input chooses the side and settings, byte 1 the chunk size for
HeadParser; the rest is the HTTP head (and what follows it). ``@KEY@`` in a
response is replaced by the right Sec-WebSocket-Accept value, so the fuzzer
can get past that check. Server side: HeadParser, parse_request,
ServerHandshake.accept (only InvalidHandshake may escape), then
PerMessageDeflate.accept_offer on the offers (nothing may escape) and a
compress/decompress round trip through the negotiated session; bytes after the
head are fed to Deflate.decompress with a small limit (only ProtocolError may
escape, and the output stays within the limit). Client side: HeadParser,
parse_response, ClientHandshake.process_response, PerMessageDeflate.accept_response.
"""

from __future__ import annotations

import sys

from fuzzlib import instrumented

with instrumented():
    import fastws.exceptions
    import fastws.extensions.permessage_deflate as pmd
    import fastws.handshake as hs

from fuzzlib import main, replay

InvalidHandshake = fastws.exceptions.InvalidHandshake
ProtocolError = fastws.exceptions.ProtocolError
CLIENT_KEY = "dGhlIHNhbXBsZSBub25jZQ=="

SETTINGS = [
    pmd.PerMessageDeflate(),
    pmd.PerMessageDeflate(server_max_window_bits=None, client_max_window_bits=None),
    pmd.PerMessageDeflate(server_no_context_takeover=True, client_no_context_takeover=True),
    pmd.PerMessageDeflate(server_max_window_bits=9, client_max_window_bits=15, threshold=10, level=1),
]


def read_head(data: bytes, chunk: int, max_size: int):
    parser = hs.HeadParser(max_size)
    fed = b""
    pieces = [data] if chunk == 0 else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        fed += piece
        result = parser.feed(piece)
        if result is not None:
            head, rest = result
            assert head.endswith(b"\r\n\r\n") and head + rest == fed, "HeadParser lost or invented bytes"
            assert len(head) <= max_size
            assert head.find(b"\r\n\r\n") == len(head) - 4
            return head, rest
    return None


def check_deflate(settings, offers: list, rest: bytes) -> None:
    accepted = settings.accept_offer(offers)
    if accepted is None:
        return
    value, session = accepted
    ((name, params),) = pmd.parse_extensions([value])
    assert name == "permessage-deflate"
    # The client's mirror of the negotiated session must read what the server sends.
    client = pmd.Deflate(
        send_window_bits=session.receive_window_bits,
        receive_window_bits=session.send_window_bits,
        send_reset=session.receive_reset,
        receive_reset=session.send_reset,
        settings=settings,
    )
    for message in (rest, rest[::-1], b""):
        if session.can_compress:
            assert client.decompress(session.compress(message), None) == message
        if client.can_compress:
            assert session.decompress(client.compress(message), len(message)) == message
    limit = len(rest) % 64
    try:
        output = pmd.Deflate(
            send_window_bits=15,
            receive_window_bits=session.receive_window_bits,
            send_reset=False,
            receive_reset=False,
            settings=settings,
        ).decompress(rest, limit)
    except ProtocolError:
        return
    assert len(output) <= limit


def server_side(flags: int, head: bytes, rest: bytes) -> None:
    try:
        request = hs.parse_request(head)
    except InvalidHandshake as exc:
        assert 400 <= exc.status < 600
        hs.error_response(exc.status, exc.reason, exc.headers).serialize()
        return
    again = hs.parse_request(request.serialize())
    assert (again.method, again.path, again.version, again.headers.raw_items()) == (
        request.method,
        request.path,
        request.version,
        request.headers.raw_items(),
    ), "parse_request(serialize()) changed the request"
    offers = request.headers.get_all("Sec-WebSocket-Extensions")
    settings = SETTINGS[(flags >> 1) & 3]
    check_deflate(settings, offers, rest)
    server = hs.ServerHandshake(
        subprotocols=["chat", "superchat"],
        origins=["https://ok.example", None] if flags & 8 else None,
        extensions=settings.accept_offer,
    )
    try:
        response, subprotocol, extension = server.accept(request)
    except InvalidHandshake as exc:
        assert 400 <= exc.status < 600
        hs.error_response(exc.status, exc.reason, exc.headers).serialize()
        return
    assert response.status == 101
    # Our own client, offering what this request offered, accepts the answer.
    client = hs.ClientHandshake(
        "host",
        subprotocols=[
            t.strip() for v in request.headers.get_all("Sec-WebSocket-Protocol") for t in v.split(",") if t.strip()
        ],
        extensions=", ".join(offers) or None,
    )
    client.key = request.headers["Sec-WebSocket-Key"]
    parsed = hs.parse_response(response.serialize())
    assert client.process_response(parsed) == (subprotocol, response.headers.get("Sec-WebSocket-Extensions"))


def client_side(flags: int, head: bytes, rest: bytes) -> None:
    try:
        response = hs.parse_response(head)
    except InvalidHandshake:
        return
    response.body = rest[:4096]
    response.serialize()
    settings = SETTINGS[(flags >> 1) & 3]
    client = hs.ClientHandshake("host", subprotocols=["chat"], extensions=settings.offer() if flags & 8 else None)
    client.key = CLIENT_KEY
    try:
        subprotocol, extensions = client.process_response(response)
    except InvalidHandshake:
        return
    assert subprotocol in (None, "chat")
    if extensions:
        try:
            settings.accept_response(extensions)
        except InvalidHandshake:
            pass


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    flags, chunk, body = data[0], data[1], data[2:]
    if flags & 1:
        body = body.replace(b"@KEY@", hs.accept_key(CLIENT_KEY).encode())
    max_size = 16384 if not flags & 0x10 else 200
    try:
        found = read_head(body, chunk, max_size)
    except InvalidHandshake as exc:
        assert exc.status == 431
        return
    if found is None:
        return
    head, rest = found
    if flags & 1:
        client_side(flags, head, rest)
    else:
        server_side(flags, head, rest)
    pmd.parse_extensions([head.decode("latin-1")])


def seeds():
    request = (
        "GET /chat?x=1 HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
        "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Origin: https://ok.example\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n"
    )
    offers = [
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits=8, permessage-deflate",
        'permessage-deflate; server_no_context_takeover; client_max_window_bits="12", x-webkit-deflate-frame',
        "foo; bar=baz, permessage-deflate; server_max_window_bits=08",
    ]
    import zlib

    compressor = zlib.compressobj(6, zlib.DEFLATED, -10)
    compressed = compressor.compress(b"hello " * 50) + compressor.flush(zlib.Z_SYNC_FLUSH)
    for index, offer in enumerate(offers):
        for flags in (index << 1, (index << 1) | 8):
            text = request + f"Sec-WebSocket-Extensions: {offer}\r\n\r\n"
            yield bytes([flags, index * 7]) + text.encode() + compressed[:-4]
    yield bytes([0, 0]) + b"POST / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"
    response = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: @KEY@\r\nSec-WebSocket-Protocol: chat\r\n"
    )
    answers = [
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=9",
    ]
    for index, answer in enumerate(answers):
        for flags in (1 | index << 1, 9 | index << 1):
            yield bytes([flags, 5]) + (response + f"Sec-WebSocket-Extensions: {answer}\r\n\r\n").encode()
    yield bytes([1, 0]) + b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno"


if __name__ == "__main__":
    argv = list(sys.argv)
    if "--replay" in argv:
        replay(test_one_input, argv[argv.index("--replay") + 1 :])
    else:
        main(test_one_input, list(seeds()), argv)
