"""Fuzzing of what fastws writes: HTTP heads built from untrusted pieces.

    python fuzz/fuzz_serialize.py -max_total_time=60 --corpus=/tmp/corpus-serialize

Byte 0 of the input chooses the route (bits 0-2) and how the pieces are
decoded (bit 3: UTF-8, so characters above U+00FF occur; else latin-1, so every
byte does); bits 4-7 are route options. Bytes 1-2 are a status code. The rest
is a list of pieces, each one length byte and that many bytes; header pairs
are consecutive pieces. Routes: Response, Request, error_response,
ClientHandshake, ServerHandshake.accept with hooks answering fuzzed values,
Response and Request changed after construction (the serialize() guard), and
Headers.add one pair at a time.

Every route checks the same contract against a character-by-character reading
of RFC 9110 §5.1/§5.5 and RFC 9112 §3/§4 (independent of fastws's regexes):
either the call raises InvalidHeader naming a piece that breaks the rules (and
one does), or nothing breaks them and the bytes written parse back to exactly
the pieces given (SP/HTAB around a value dropped): no header smuggled in, none
lost, the head ending where it should. Any other exception is a crash.
"""

from __future__ import annotations

import string
import sys

from fuzzlib import instrumented

with instrumented():
    import fastws.exceptions
    import fastws.handshake as hs

from fuzzlib import main, replay

InvalidHandshake = fastws.exceptions.InvalidHandshake
InvalidHeader = fastws.exceptions.InvalidHeader
MAX_PAIRS = 100  # parse_request/parse_response allow 128 header lines

# -- the rules, spelled out (the oracle) ----------------------------------------------------

TCHARS = frozenset("!#$%&'*+-.^_`|~" + string.digits + string.ascii_letters)


def is_token(text: str) -> bool:
    return bool(text) and all(c in TCHARS for c in text)


def is_field_char(c: str) -> bool:
    """HTAB, SP, VCHAR or obs-text (0x80-0xFF)."""
    return c == "\t" or " " <= c <= "~" or "\x80" <= c <= "\xff"


def value_ok(value: str) -> bool:
    """Headers takes it (SP/HTAB at the ends are dropped, not refused)."""
    return all(is_field_char(c) for c in value)


def exact_value_ok(value: str) -> bool:
    """serialize() writes it as is: also no SP/HTAB at either end."""
    return value_ok(value) and value == value.strip(" \t")


def target_ok(target: str) -> bool:
    return bool(target) and all("!" <= c <= "~" or "\x80" <= c <= "\xff" for c in target)


def version_ok(version: str) -> bool:
    return (
        len(version) == 8 and version[:5] == "HTTP/" and version[5] in string.digits and version[6] == "."
    ) and version[7] in string.digits


def subprotocol_ok(subprotocol: str) -> bool:
    return (
        exact_value_ok(subprotocol)
        and subprotocol != ""
        and "," not in subprotocol
        and subprotocol.strip() == subprotocol
    )


def bad_pairs(pairs, check=value_ok) -> list:
    return [name for name, value in pairs if not (is_token(name) and check(value))]


# -- input layout ---------------------------------------------------------------------------


def decode(data: bytes) -> tuple[int, int, list]:
    """(flags, status, pieces) from an input."""
    flags, status = data[0], int.from_bytes(data[1:3], "big")
    utf8 = bool(flags & 8)
    pieces, pos = [], 3
    while pos < len(data):
        size = data[pos]
        raw = data[pos + 1 : pos + 1 + size]
        pieces.append(raw.decode("utf-8", "replace") if utf8 else raw.decode("latin-1"))
        pos += 1 + size
    return flags, status, pieces


def encode(route: int, status: int, pieces, *, utf8: bool = False, options: int = 0) -> bytes:
    """An input for ``decode`` (for seeds and reproducers)."""
    out = bytearray([route | (8 if utf8 else 0) | options << 4]) + status.to_bytes(2, "big")
    for piece in pieces:
        raw = piece.encode("utf-8" if utf8 else "latin-1")
        assert len(raw) < 256
        out += bytes([len(raw)]) + raw
    return bytes(out)


def pairs_of(pieces) -> list:
    return list(zip(pieces[0::2], pieces[1::2]))[:MAX_PAIRS]


def stored(pairs) -> list:
    return [(name, value.strip(" \t")) for name, value in pairs]


# -- checks ---------------------------------------------------------------------------------


def outcome(call, bad: list):
    """Run ``call``: InvalidHeader naming one of ``bad`` if ``bad``, else its result."""
    try:
        result = call()
    except InvalidHeader as exc:
        assert bad, f"refused a valid input: {exc}"
        assert exc.name in bad, f"named {exc.name!r}, not one of {bad!r}"
        assert len(str(exc)) < 400, "the message echoes the value"
        return None
    assert not bad, f"accepted {bad!r}"
    return result


def split_head(wire: bytes, header_count: int) -> tuple[bytes, bytes]:
    """The head (checked to end exactly where it should) and what follows."""
    found = hs.HeadParser(1 << 20).feed(wire)
    assert found is not None, "no end of head"
    head, rest = found
    assert head.count(b"\r\n") == header_count + 2, "a header line was split or joined"
    bare = head.replace(b"\r\n", b"")
    assert b"\r" not in bare and b"\n" not in bare and b"\0" not in bare, "a bare CR, LF or NUL was written"
    return head, rest


def check_response(response, expected_items: list, body: bytes) -> None:
    wire = response.serialize()
    head, rest = split_head(wire, len(expected_items))
    assert rest == body
    parsed = hs.parse_response(head)
    assert (parsed.status, parsed.reason) == (response.status, response.reason or " ")
    assert parsed.headers.raw_items() == expected_items, "headers changed on the way"


def with_length(response, items: list) -> list:
    if response.status != 101 and not any(name.lower() == "content-length" for name, _ in items):
        return items + [("Content-Length", str(len(response.body)))]
    return items


def check_request(request, expected_items: list) -> None:
    head, rest = split_head(request.serialize(), len(expected_items))
    assert rest == b""
    parsed = hs.parse_request(head)
    assert (parsed.method, parsed.path, parsed.version) == (request.method, request.path, request.version)
    assert parsed.headers.raw_items() == expected_items, "headers changed on the way"


# -- routes ---------------------------------------------------------------------------------


def route_response(flags: int, status: int, pieces: list) -> None:
    reason, pairs = pieces[0] if pieces else "", pairs_of(pieces[1:])
    bad = [] if 100 <= status <= 599 else ["status code"]
    bad += [] if value_ok(reason) else ["reason phrase"]
    bad += bad_pairs(pairs)
    body = bytes(status % 5)
    response = outcome(lambda: hs.Response(status, hs.Headers(pairs) if flags & 16 else pairs, body, reason), bad)
    if response is not None:
        check_response(response, with_length(response, stored(pairs)), body)


def route_request(flags: int, status: int, pieces: list) -> None:
    method, target, version = (pieces + ["", "", ""])[:3]
    if not flags & 16:
        version = "HTTP/1.1"
    pairs = pairs_of(pieces[3:])
    bad = [] if is_token(method) else ["method"]
    bad += [] if target_ok(target) else ["request target"]
    bad += [] if version_ok(version) else ["HTTP version"]
    bad += bad_pairs(pairs)
    request = outcome(lambda: hs.Request(method, target, pairs, version), bad)
    if request is not None:
        check_request(request, stored(pairs))


def route_error_response(flags: int, status: int, pieces: list) -> None:
    text, pairs = pieces[0] if pieces else "", pairs_of(pieces[1:])
    bad = ([] if 100 <= status <= 599 else ["status code"]) + bad_pairs(pairs)
    response = outcome(lambda: hs.error_response(status, text, pairs), bad)
    if response is not None:
        items = stored(pairs) + [("Content-Type", "text/plain; charset=utf-8"), ("Connection", "close")]
        check_response(response, with_length(response, items), (text + "\n").encode())


def route_client(flags: int, status: int, pieces: list) -> None:
    host, path, origin, extensions = (pieces + ["", "", "", ""])[:4]
    count = flags >> 4 & 3
    subprotocols = pieces[4 : 4 + count]
    pairs = pairs_of(pieces[4 + count :])
    use_origin = bool(flags & 64)
    bad = [] if value_ok(host) else ["Host"]
    bad += [] if not use_origin or value_ok(origin) else ["Origin"]
    bad += [] if all(subprotocol_ok(p) for p in subprotocols) else ["Sec-WebSocket-Protocol"]
    bad += [] if value_ok(extensions) else ["Sec-WebSocket-Extensions"]
    bad += bad_pairs(pairs)
    bad += [] if target_ok(path) else ["request target"]

    def build():
        return hs.ClientHandshake(
            host,
            path,
            subprotocols=subprotocols,
            extra_headers=iter(pairs),
            origin=origin if use_origin else None,
            extensions=extensions or None,
        )

    client = outcome(build, bad)
    if client is None:
        return
    expected = [("Host", host), ("Upgrade", "websocket"), ("Connection", "Upgrade")]
    expected += [("Sec-WebSocket-Key", client.key), ("Sec-WebSocket-Version", "13")]
    expected += [("Origin", origin)] if use_origin else []
    expected += [("Sec-WebSocket-Protocol", ", ".join(subprotocols))] if subprotocols else []
    expected += [("Sec-WebSocket-Extensions", extensions)] if extensions else []
    expected += [("User-Agent", hs.SERVER_NAME)] + pairs
    check_request(client.request, stored(expected))
    # The server reads the offers as they were made, and the client accepts its choice.
    request = hs.parse_request(client.request_bytes())
    try:
        response, chosen, _ = hs.ServerHandshake(subprotocols=subprotocols[::-1]).accept(request)
    except InvalidHandshake:
        return  # the extra headers may break the upgrade (a second Host...): the peer's call
    assert chosen == (subprotocols[-1] if subprotocols else None)
    assert client.process_response(hs.parse_response(response.serialize()))[0] == chosen


def route_server(flags: int, status: int, pieces: list) -> None:
    extension, chosen, server_header, offer = (pieces + ["", "", "", ""])[:4]
    bad = [] if not server_header or value_ok(server_header) else ["Server"]
    server = outcome(
        lambda: hs.ServerHandshake(
            select_subprotocol=(lambda request, offered: chosen) if flags & 16 else None,
            subprotocols=[chosen],
            extensions=lambda offers: (extension, None) if extension else None,
            server_header=server_header or None,
        ),
        bad,
    )
    if server is None:
        return
    headers = [("Host", "h"), ("Upgrade", "websocket"), ("Connection", "Upgrade")]
    headers += [("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]
    headers += [("Sec-WebSocket-Extensions", "x-fuzz"), ("Sec-WebSocket-Protocol", offer)]
    request = outcome(lambda: hs.Request("GET", "/", headers), [] if value_ok(offer) else ["Sec-WebSocket-Protocol"])
    if request is None:
        return
    offered = [token.strip() for token in request.headers["Sec-WebSocket-Protocol"].split(",") if token.strip()]
    try:
        response, subprotocol, _ = server.accept(request)
    except InvalidHandshake as exc:
        assert exc.status == 500, exc
        hook_wrong = flags & 16 and offered and chosen not in offered
        assert hook_wrong or not value_ok(extension), f"refused a valid answer: {exc.reason}"
        if not hook_wrong:
            assert isinstance(exc.__cause__, InvalidHeader) and "Sec-WebSocket-Extensions" in exc.reason
        hs.error_response(exc.status, exc.reason, exc.headers).serialize()
        return
    assert value_ok(extension), "wrote an extension answer that breaks the rules"
    assert subprotocol is None or subprotocol in offered
    check_response(response, response.headers.raw_items(), b"")


def route_changed_response(flags: int, status: int, pieces: list) -> None:
    response = hs.Response(200, hs.Headers([("X-Before", "1")]), b"ok")
    bad, pairs = [], pairs_of(pieces[1:])
    items = [("X-Before", "1")]
    if flags & 16:
        response.reason = pieces[0] if pieces else ""
        bad += [] if value_ok(response.reason) else ["reason phrase"]
    if flags & 32:
        response.status = status
        bad += [] if 100 <= status <= 599 else ["status code"]
    if flags & 64:  # past add(): the guard in serialize() is strict
        response.headers._items.extend(pairs)
        bad += bad_pairs(pairs, exact_value_ok)
        items += pairs
    else:  # a plain list assigned: serialize() makes Headers of it
        response.headers = pairs  # type: ignore[assignment]
        bad += bad_pairs(pairs)
        items = stored(pairs)
    if outcome(lambda: response.serialize(), bad) is not None:
        check_response(response, with_length(response, items), b"ok")


def route_changed_request(flags: int, status: int, pieces: list) -> None:
    request = hs.ClientHandshake("h", "/").request
    method, target, version = (pieces + ["", "", ""])[:3]
    pairs = pairs_of(pieces[3:])
    bad = []
    if flags & 16:
        request.method = method
        bad += [] if is_token(method) else ["method"]
    if flags & 32:
        request.path = target
        bad += [] if target_ok(target) else ["request target"]
    if flags & 64:
        request.version = version
        bad += [] if version_ok(version) else ["HTTP version"]
    items = request.headers.raw_items() + pairs
    request.headers._items.extend(pairs)
    bad += bad_pairs(pairs, exact_value_ok)
    if outcome(lambda: request.serialize(), bad) is not None:
        check_request(request, items)


def route_add(flags: int, status: int, pieces: list) -> None:
    headers, kept = hs.Headers(), []
    for name, value in pairs_of(pieces):
        before = headers.raw_items()
        try:
            headers.add(name, value)
        except InvalidHeader as exc:
            assert bad_pairs([(name, value)]) and exc.name == name, f"refused a valid header: {exc}"
            assert headers.raw_items() == before, "a refused header was half-added"
            continue
        assert not bad_pairs([(name, value)]), f"accepted {name!r}: {value!r}"
        kept.append((name, value.strip(" \t")))
    assert headers.raw_items() == kept
    check_request(hs.Request("GET", "/", headers), kept)


ROUTES = [
    route_response,
    route_request,
    route_error_response,
    route_client,
    route_server,
    route_changed_response,
    route_changed_request,
    route_add,
]


def test_one_input(data: bytes) -> None:
    if len(data) < 3:
        return
    flags, status, pieces = decode(data)
    ROUTES[flags & 7](flags, status, pieces)


def seeds():
    legal = ["X-Obs", "caf\xe9 \x80\xff", "X-Tab", "a\tb", "X-Empty", "", "X-Space", "  padded  "]
    evil = ["X-Test", "a\r\nSet-Cookie: evil=1", "Bad Name", "v", "X-Nul", "a\x00b", "X-Ctl", "\x7f"]
    for options in (0, 1, 3, 7, 15):
        yield encode(0, 200, ["OK", *legal], options=options)
        yield encode(0, 101 if options & 1 else 999, ["Switching\tProtocols", *legal, *evil[:2]], options=options)
        yield encode(1, 0, ["GET", "/caf\xe9?q=1", "HTTP/1.1", *legal], options=options)
        yield encode(1, 0, ["GET", "/a b", "HTTP/1.1\r\nEvil: 1", *evil], options=options)
        yield encode(2, 400, ["bad\r\nrequest", *legal], options=options)
        yield encode(2, 426, ["upgrade", "Sec-WebSocket-Version", "13", *evil[2:4]], options=options)
        yield encode(
            3,
            0,
            ["example.com:8080", "/chat?x=1", "https://o.example", "permessage-deflate", "chat", "v2", "v3", *legal],
            options=options,
        )
        yield encode(3, 0, ["h\r\nEvil: 1", "/", "", "", "chat, admin", *evil], options=options)
        yield encode(
            4, 0, ["permessage-deflate; server_max_window_bits=10", "chat", "fastws", "chat, v2"], options=options
        )
        yield encode(4, 0, ["x-fuzz\r\nSet-Cookie: a=1", "v2", "srv\n", "chat,v2"], options=options)
        yield encode(5, 600, ["Not\nOK", *legal, *evil[:2]], options=options)
        yield encode(6, 0, ["G T", "/x", "HTTP/1.0", *legal], options=options)
        yield encode(7, 0, [*legal, *evil], options=options)
    yield encode(3, 0, ["\u20ac.example", "/\u2603", "", "", "\u00e9t\u00e9", *legal], utf8=True, options=1)
    yield encode(0, 200, ["\u2603", "X-Uni", "\u20ac"], utf8=True)
    # One broken piece each, the rest legal: the check for that piece alone must refuse it.
    yield encode(0, 600, ["OK", *legal])
    yield encode(0, 200, ["O\nK", *legal])
    yield encode(1, 0, ["GET", "/a\r\nb", "HTTP/1.1", *legal])
    yield encode(1, 0, ["GET", "/\x00", "HTTP/1.1"])
    yield encode(1, 0, ["GET", "/\u2603", "HTTP/1.1"], utf8=True)
    yield encode(5, 99, ["OK"], options=2)
    yield encode(5, 0, ["O\rK"], options=1)
    yield encode(6, 0, ["GET", "/\r\n", "HTTP/1.1"], options=2)
    yield encode(6, 0, ["GET", "/", "HTTP/1.1\n"], options=4)
    yield encode(0, 200, ["O\x00K", *legal])
    yield encode(0, 200, ["\u2603"], utf8=True)
    yield encode(1, 0, ["GET", "/", "HTTP/x.y"], options=1)


if __name__ == "__main__":
    argv = list(sys.argv)
    if "--replay" in argv:
        replay(test_one_input, argv[argv.index("--replay") + 1 :])
    else:
        main(test_one_input, list(seeds()), argv)
