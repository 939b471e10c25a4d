"""The opening handshake, sans I/O (RFC 6455 §4)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastws.exceptions import InvalidHandshake, InvalidHeader, InvalidStatus
from fastws.handshake import (
    ClientHandshake,
    Headers,
    HeadParser,
    Request,
    Response,
    ServerHandshake,
    accept_key,
    error_response,
    parse_request,
    parse_response,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def request_head(*extra: str, method="GET", version="HTTP/1.1", drop=()) -> bytes:
    lines = [f"{method} /chat?room=1 {version}"]
    headers = {
        "Host": "server.example.com",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    lines += [f"{k}: {v}" for k, v in headers.items() if k not in drop]
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_accept_key_matches_rfc_example():
    # RFC 6455 §1.3
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_valid_request_gets_101():
    request = parse_request(request_head())
    assert request.path == "/chat?room=1"
    response, subprotocol, extensions = ServerHandshake().accept(request)
    assert response.status == 101
    assert response.headers["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert subprotocol is None and extensions is None
    wire = response.serialize()
    assert wire.startswith(b"HTTP/1.1 101 Switching Protocols\r\n") and wire.endswith(b"\r\n\r\n")


def test_upgrade_and_connection_are_token_lists_case_insensitive():
    head = request_head(drop=("Upgrade", "Connection"))
    head = head.replace(b"\r\n\r\n", b"\r\nupgrade: WebSocket, foo\r\nconnection: keep-alive, UPGRADE\r\n\r\n")
    response, _, _ = ServerHandshake().accept(parse_request(head))
    assert response.status == 101


@pytest.mark.parametrize(
    "head, status",
    [
        (request_head(method="POST"), 405),
        (request_head(version="HTTP/1.0"), 505),
        (request_head(drop=("Host",)), 400),
        (request_head(drop=("Upgrade",)), 426),
        (request_head(drop=("Connection",)), 400),
        (request_head(drop=("Sec-WebSocket-Key",)), 400),
        (request_head("Sec-WebSocket-Key: abc", drop=("Sec-WebSocket-Key",)), 400),
        (request_head(drop=("Sec-WebSocket-Version",)), 426),
    ],
)
def test_bad_requests_get_their_status(head, status):
    with pytest.raises(InvalidHandshake) as info:
        ServerHandshake().accept(parse_request(head))
    assert info.value.status == status


def test_wrong_version_gets_426_with_supported_version():
    head = request_head(drop=("Sec-WebSocket-Version",)).replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Version: 8\r\n\r\n")
    with pytest.raises(InvalidHandshake) as info:
        ServerHandshake().accept(parse_request(head))
    assert info.value.status == 426
    assert ("Sec-WebSocket-Version", "13") in info.value.headers


@pytest.mark.parametrize(
    "head",
    [
        b"garbage\r\n\r\n",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"\r\n\r\n",
    ],
)
def test_malformed_heads_are_400(head):
    with pytest.raises(InvalidHandshake) as info:
        parse_request(head)
    assert info.value.status == 400


def test_head_parser_is_incremental_and_bounded():
    parser = HeadParser(max_size=200)
    head = request_head()
    for i in range(len(head) - 1):
        assert parser.feed(head[i : i + 1]) is None
    assert parser.feed(head[-1:] + b"\x81\x00") == (head, b"\x81\x00")
    with pytest.raises(InvalidHandshake) as info:
        HeadParser(max_size=200).feed(b"GET / HTTP/1.1\r\nX: " + b"a" * 300)
    assert info.value.status == 431


def test_subprotocol_server_preference_and_callback():
    head = request_head("Sec-WebSocket-Protocol: chat, superchat", "Sec-WebSocket-Protocol: v3")
    request = parse_request(head)
    assert ServerHandshake(subprotocols=["v3", "chat"]).accept(request)[1] == "v3"
    assert ServerHandshake(subprotocols=["other"]).accept(request)[1] is None
    picked = ServerHandshake(select_subprotocol=lambda req, offered: offered[-1]).accept(request)
    assert picked[1] == "v3" and picked[0].headers["Sec-WebSocket-Protocol"] == "v3"
    # A client that offers none is accepted without one.
    assert ServerHandshake(subprotocols=["chat"]).accept(parse_request(request_head()))[1] is None


def test_origin_allow_list():
    allowed = ServerHandshake(origins=["https://good.example"])
    assert allowed.accept(parse_request(request_head("Origin: https://good.example")))[0].status == 101
    for head in (request_head("Origin: https://evil.example"), request_head()):
        with pytest.raises(InvalidHandshake) as info:
            allowed.accept(parse_request(head))
        assert info.value.status == 403
    assert ServerHandshake(origins=[None]).accept(parse_request(request_head()))[0].status == 101


def test_extension_hook_answers_offers():
    session = object()
    hook = ServerHandshake(extensions=lambda offers: ("x-test", session) if "x-test" in offers else None)
    response, _, extension = hook.accept(parse_request(request_head("Sec-WebSocket-Extensions: x-test")))
    assert extension is session and response.headers["Sec-WebSocket-Extensions"] == "x-test"
    # Without a hook, offered extensions are declined.
    assert ServerHandshake().accept(parse_request(request_head("Sec-WebSocket-Extensions: x-test")))[2] is None


def client_response(client: ClientHandshake, *extra: str, accept=None) -> Response:
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept or accept_key(client.key)}",
        *extra,
    ]
    return parse_response(("\r\n".join(lines) + "\r\n\r\n").encode())


def test_client_request_and_response():
    client = ClientHandshake("example.com:8080", "/x", subprotocols=["chat"], extra_headers=[("X-Token", "t")])
    request = parse_request(client.request_bytes())
    assert request.headers["Host"] == "example.com:8080"
    assert request.headers["Sec-WebSocket-Protocol"] == "chat"
    assert request.headers["X-Token"] == "t"
    # The server side accepts what the client side builds.
    assert ServerHandshake(subprotocols=["chat"]).accept(request)[1] == "chat"
    assert client.process_response(client_response(client, "Sec-WebSocket-Protocol: chat")) == ("chat", None)


def test_client_keys_are_random():
    assert ClientHandshake("h").key != ClientHandshake("h").key


def test_client_rejects_bad_answers():
    client = ClientHandshake("h", subprotocols=["chat"])
    with pytest.raises(InvalidHandshake, match="Accept"):
        client.process_response(client_response(client, accept="AAAA"))
    with pytest.raises(InvalidHandshake, match="not offered"):
        client.process_response(client_response(client, "Sec-WebSocket-Protocol: other"))
    with pytest.raises(InvalidHandshake, match="extensions"):
        client.process_response(client_response(client, "Sec-WebSocket-Extensions: permessage-deflate"))
    with pytest.raises(InvalidStatus) as info:
        client.process_response(parse_response(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"))
    assert info.value.status == 403


@pytest.mark.parametrize("code", [b"40\xb3", b"40\xc2\xb3", b"4O3", b"40", b"4033", b"-40", b"\xd9\xa4\xd9\xa3"])
def test_malformed_status_codes_are_invalid_handshakes(code):
    # Found by fuzz/fuzz_handshake.py: "40³" passed str.isdigit() and crashed int().
    with pytest.raises(InvalidHandshake, match="invalid status line"):
        parse_response(b"HTTP/1.1 " + code + b" Forbidden\r\nContent-Length: 2\r\n\r\n")


def test_headers_multi_and_case_insensitive():
    headers = Headers([("A", "1"), ("a", "2")])
    assert headers.get("A") == "1, 2" and headers.get_all("a") == ["1", "2"] and "a" in headers


# -- headers validated on output (RFC 9110 §5.1, §5.5; RFC 9112 §3, §4) ---------------------

INJECTIONS = [
    "a\r\nSet-Cookie: evil=1",
    "a\nEvil: 1",
    "a\rb",
    "a\x00b",
    "\r\n",
    "a\x7fb",
    "a\x0bb",
    "a\u2028b",
    "\u20ac",
]
START_LINE = ("status code", "reason phrase", "method", "request target", "HTTP version")
BAD_NAMES = ["", "Bad Name", "X:Y", "X\r\nEvil", "Caf\xe9", "X\t", "(paren)", "X\x00"]


def refused(call, name):
    """Run ``call``; it must raise InvalidHeader naming ``name``, in a short message."""
    with pytest.raises(InvalidHeader) as info:
        call()
    assert isinstance(info.value, ValueError)
    assert info.value.name == name
    shown = name if name in START_LINE else repr(name)[:40] if name else "empty"
    assert shown in str(info.value)
    assert len(str(info.value)) < 300
    return info.value


@pytest.mark.parametrize("value", INJECTIONS)
def test_bad_values_are_refused_in_headers_and_add(value):
    refused(lambda: Headers([("Host", "a"), ("X-Test", value)]), "X-Test")
    headers = Headers([("Host", "a")])
    refused(lambda: headers.add("X-Test", value), "X-Test")
    assert headers.raw_items() == [("Host", "a")]  # nothing half-added


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused(name):
    refused(lambda: Headers([(name, "v")]), name)
    refused(lambda: Headers().add(name, "v"), name)


def test_issue_examples_never_reach_the_wire():
    error = refused(lambda: Response(200, [("X-Test", "a\r\nSet-Cookie: evil=1")]), "X-Test")
    assert "Set-Cookie" not in str(error)  # the value is not echoed
    refused(lambda: ClientHandshake("h", extra_headers=[("X", "a\r\nEvil: 1")]), "X")


def test_huge_bad_value_is_not_echoed():
    error = refused(lambda: Headers([("X-Big", "a" * 1_000_000 + "\n")]), "X-Big")
    assert "index 1000000" in str(error)
    error = refused(lambda: Headers([("N" * 1_000_000 + " ", "v")]), "N" * 1_000_000 + " ")
    assert "1000001 characters" in str(error)


def test_non_str_headers_are_type_errors():
    with pytest.raises(TypeError, match="X-Bytes"):
        Headers([("X-Bytes", b"v")])
    with pytest.raises(TypeError, match="header name"):
        Headers().add(b"X", "v")


@pytest.mark.parametrize("status", [0, 99, 600, 1000, -200, "200", 200.0, True, None])
def test_response_status_must_be_100_to_599(status):
    refused(lambda: Response(status), "status code")
    refused(lambda: error_response(status, "text"), "status code")


@pytest.mark.parametrize("reason", ["OK\r\nSet-Cookie: a=1", "OK\n", "O\x00K", "\u2603"])
def test_reason_phrase_without_controls(reason):
    refused(lambda: Response(200, reason=reason), "reason phrase")


@pytest.mark.parametrize(
    "method, path, version, name",
    [
        ("GET", "/a b", "HTTP/1.1", "request target"),
        ("GET", "/a\r\nEvil: 1", "HTTP/1.1", "request target"),
        ("GET", "/a\tb", "HTTP/1.1", "request target"),
        ("GET", "", "HTTP/1.1", "request target"),
        ("G T", "/", "HTTP/1.1", "method"),
        ("GET\r\n", "/", "HTTP/1.1", "method"),
        ("GET", "/", "HTTP/1.1\r\nEvil: 1", "HTTP version"),
        ("GET", "/", "HTTP/11", "HTTP version"),
    ],
)
def test_request_line_is_checked(method, path, version, name):
    refused(lambda: Request(method, path, Headers(), version), name)


def test_error_response_checks_its_headers_not_its_text():
    refused(lambda: error_response(400, "bad", [("X-Why", "a\r\nb")]), "X-Why")
    # The text is the body: CR/LF there are fine.
    wire = error_response(400, "line one\r\nline two").serialize()
    assert wire.endswith(b"\r\n\r\nline one\r\nline two\n")
    assert parse_response(wire[: wire.index(b"\r\n\r\n") + 4]).headers["Content-Length"] == "19"


def test_server_header_is_checked_at_construction():
    refused(lambda: ServerHandshake(server_header="fastws\r\nSet-Cookie: a=1"), "Server")


@pytest.mark.parametrize("value", INJECTIONS[:5])
def test_extension_hook_answer_with_injection_is_a_500(value):
    server = ServerHandshake(extensions=lambda offers: (value, object()))
    with pytest.raises(InvalidHandshake) as info:
        server.accept(parse_request(request_head("Sec-WebSocket-Extensions: x-test")))
    assert info.value.status == 500 and "Sec-WebSocket-Extensions" in info.value.reason
    assert isinstance(info.value.__cause__, InvalidHeader)
    # What a caller sends instead is a clean 500.
    wire = error_response(info.value.status, info.value.reason, info.value.headers).serialize()
    head = wire[: wire.index(b"\r\n\r\n") + 4]
    assert parse_response(head).status == 500 and b"Set-Cookie" not in head and b"Evil" not in head


def test_subprotocol_hooks_cannot_inject():
    head = request_head("Sec-WebSocket-Protocol: chat")
    evil = ServerHandshake(select_subprotocol=lambda request, offered: "chat\r\nSet-Cookie: a=1")
    with pytest.raises(InvalidHandshake) as info:
        evil.accept(parse_request(head))
    assert info.value.status == 500
    # A server_header changed after construction is caught by accept, as a 500.
    server = ServerHandshake()
    server.server_header = "x\r\nEvil: 1"
    with pytest.raises(InvalidHandshake) as info:
        server.accept(parse_request(head))
    assert info.value.status == 500 and "'Server'" in info.value.reason


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(host="h\r\nEvil: 1"), "Host"),
        (dict(host="h", path="/x HTTP/1.1\r\nEvil: 1\r\n\r\nGET /"), "request target"),
        (dict(host="h", path="/a b"), "request target"),
        (dict(host="h", origin="https://o\r\nEvil: 1"), "Origin"),
        (dict(host="h", subprotocols=["chat\r\nEvil: 1"]), "Sec-WebSocket-Protocol"),
        (dict(host="h", subprotocols=["chat, admin"]), "Sec-WebSocket-Protocol"),
        (dict(host="h", subprotocols=["chat", ""]), "Sec-WebSocket-Protocol"),
        (dict(host="h", subprotocols=[" chat"]), "Sec-WebSocket-Protocol"),
        (dict(host="h", extensions="permessage-deflate\r\nEvil: 1"), "Sec-WebSocket-Extensions"),
        (dict(host="h", user_agent="ua\nEvil: 1"), "User-Agent"),
        (dict(host="h", extra_headers=[("X-Ok", "1"), ("X-Token", "t\r\nEvil: 1")]), "X-Token"),
        (dict(host="h", extra_headers=[("X Token", "t")]), "X Token"),
    ],
)
def test_client_handshake_refuses_injection(kwargs, name):
    refused(lambda: ClientHandshake(**kwargs), name)


def test_serialize_is_a_guard_for_changes_after_construction():
    response = Response(200, Headers([("X-A", "1")]))
    response.reason = "OK\r\nEvil: 1"
    refused(response.serialize, "reason phrase")
    response = Response(200)
    response.status = 1000
    refused(response.serialize, "status code")
    response = Response(200)
    response.headers = [("X-A", "1\r\nEvil: 1")]  # a list assigned past __post_init__
    refused(response.serialize, "X-A")
    response = Response(101, Headers([("Upgrade", "websocket")]))
    response.headers._items.append(("X-B", "\n"))  # past add()
    refused(response.serialize, "X-B")
    request = ClientHandshake("h").request
    request.path = "/\r\nEvil: 1"
    refused(request.serialize, "request target")
    request = ClientHandshake("h").request
    request.headers._items.append(("Evil Name", "1"))
    refused(request.serialize, "Evil Name")


LEGAL = [
    ("X-Obs-Text", "caf\xe9 \x80\xff\x85\xa0"),  # obs-text, latin-1 on the wire
    ("X-Tab", "a\tb \t c"),
    ("X-Empty", ""),
    ("X-Colons", "a: b:c"),
    ("X-Quotes", '"quoted, list", ;=()<>@'),
    ("!#$%&'*+-.^_`|~09azAZ", "tchars"),
    ("X-Repeated", "1"),
    ("x-repeated", "2"),
]


def test_legal_unusual_values_round_trip():
    headers = Headers(LEGAL)
    assert parse_request(Request("GET", "/caf\xe9?q=\xff", headers).serialize()).headers.raw_items() == LEGAL
    response = Response(101, headers, reason="Switching\tProtocols \xe9")
    parsed = parse_response(response.serialize())
    assert parsed.headers.raw_items() == LEGAL and parsed.reason == "Switching\tProtocols \xe9"
    assert b"X-Obs-Text: caf\xe9 \x80\xff\x85\xa0\r\n" in response.serialize()
    client = ClientHandshake("h", subprotocols=["chat v2", "caf\xe9"], extra_headers=LEGAL)
    request = parse_request(client.request_bytes())
    assert request.headers.raw_items()[-len(LEGAL) :] == LEGAL
    assert ServerHandshake(subprotocols=["caf\xe9"]).accept(request)[1] == "caf\xe9"


def test_whitespace_around_a_value_is_dropped_as_the_recipient_would():
    # RFC 9112 §5.1: SP/HTAB around the value is optional whitespace, not part of it.
    headers = Headers([("X-A", "  a b\t"), ("X-B", " \t ")])
    headers.add("X-C", "\tc ")
    assert headers.raw_items() == [("X-A", "a b"), ("X-B", ""), ("X-C", "c")]
    assert parse_response(Response(101, headers).serialize()).headers.raw_items() == headers.raw_items()


def test_client_can_offer_back_what_the_server_parsed():
    # fuzz/fuzz_handshake.py mirrors each request with a ClientHandshake: a
    # non-token subprotocol the server parsed, or offers joined into "x, " (an
    # empty element), must not make the client refuse.
    client = ClientHandshake("h", subprotocols=["cha\xd6", "a b"], extensions="x, ")
    request = parse_request(client.request_bytes())
    assert request.headers["Sec-WebSocket-Extensions"] == "x,"
    assert ServerHandshake(subprotocols=["a b"]).accept(request)[1] == "a b"


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 000 Zero\r\n\r\n",
        b"HTTP/1.1 600 Big\r\n\r\n",
        b"HTTP/1.1 099 Small\r\n\r\n",
        b"HTTP/1.1 101 Switching\x00Protocols\r\n\r\n",
        b"HTTP/1.1 403 For\rbidden\r\n\r\n",
    ],
)
def test_parse_response_applies_the_same_rules(head):
    with pytest.raises(InvalidHandshake, match="invalid status line"):
        parse_response(head)


@pytest.mark.parametrize(
    "line", [b"GET /a\x00b HTTP/1.1", b"GET /a\tb HTTP/1.1", b"G@T / HTTP/1.1", b"GET / HTTP/x", b"GET / HTTP/1.1 "]
)
def test_parse_request_applies_the_same_rules(line):
    with pytest.raises(InvalidHandshake, match="invalid request line") as info:
        parse_request(line + b"\r\nHost: a\r\n\r\n")
    assert info.value.status == 400


# Names and values from an alphabet rich in what breaks a head: CR, LF, NUL, other
# controls, colon, whitespace, obs-text and a character above U+00FF.
NASTY = "aZ09-_!~:; \t\r\n\x00\x01\x0b\x1f\x7f\x80\x85\xa0\xe9\xff\u0100\u20ac"
TCHARS = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
names = st.one_of(st.sampled_from(["Host", "X-Test", "Set-Cookie", "a"]), st.text(NASTY, max_size=8))
values = st.one_of(st.text(NASTY, max_size=12), st.text(max_size=6))
header_lists = st.lists(st.tuples(names, values), max_size=12)
PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def oracle(name: str, value: str) -> bool:
    """RFC 9110 §5.1/§5.5 spelled out character by character, independent of the regexes."""
    stripped = value.strip(" \t")
    return (
        bool(name)
        and all(c in TCHARS for c in name)
        and all(c == "\t" or " " <= c <= "~" or "\x80" <= c <= "\xff" for c in stripped)
    )


@PROPERTY
@given(items=header_lists, response=st.booleans(), status=st.sampled_from([101, 200, 404]))
def test_property_construction_raises_or_round_trip_is_exact(items, response, status):
    try:
        headers = Headers(items)
    except InvalidHeader as exc:
        assert not all(oracle(n, v) for n, v in items)
        assert exc.name in [n for n, v in items if not oracle(n, v)]
        return
    assert all(oracle(n, v) for n, v in items)
    expected = [(n, v.strip(" \t")) for n, v in items]
    assert headers.raw_items() == expected
    if response:
        wire = Response(status, headers, b"body").serialize()
        if status != 101 and "Content-Length" not in headers:
            expected.append(("Content-Length", "4"))
        head, body = wire[: wire.index(b"\r\n\r\n") + 4], wire[wire.index(b"\r\n\r\n") + 4 :]
        parsed = parse_response(head)
        assert body == b"body"
    else:
        parsed = parse_request(Request("GET", "/", headers).serialize())
    assert parsed.headers.raw_items() == expected  # no smuggled header, none lost, none changed


@PROPERTY
@given(extra=header_lists, path=st.text(NASTY, min_size=1, max_size=10), origin=values)
def test_property_client_handshake_raises_or_server_sees_exactly_it(extra, path, origin):
    try:
        client = ClientHandshake("h", "/" + path, origin=origin, extra_headers=extra)
    except InvalidHeader as exc:
        bad_path = not all("!" <= c <= "~" or "\x80" <= c <= "\xff" for c in path)
        bad = [n for n, v in [("Origin", origin), *extra] if not oracle(n, v)]
        assert bad_path or bad
        assert exc.name in bad + (["request target"] if bad_path else [])
        return
    request = parse_request(client.request_bytes())
    assert request.path == "/" + path
    assert request.headers.raw_items()[-len(extra) or len(request.headers) :] == [(n, v.strip(" \t")) for n, v in extra]
    assert request.headers.get_all("Origin")[0] == origin.strip(" \t")


@PROPERTY
@given(reason=st.text(NASTY, max_size=10), status=st.integers(0, 700))
def test_property_status_line_raises_or_round_trips(reason, status):
    try:
        response = Response(status, reason=reason)
    except InvalidHeader as exc:
        assert exc.name in ("status code", "reason phrase")
        legal_reason = all(c == "\t" or " " <= c <= "~" or "\x80" <= c <= "\xff" for c in reason)
        assert not (100 <= status <= 599 and legal_reason)
        return
    parsed = parse_response(response.serialize().split(b"\r\n\r\n")[0] + b"\r\n\r\n")
    assert parsed.status == status and parsed.reason == (response.reason or " ")
