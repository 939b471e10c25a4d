"""The opening handshake, sans I/O (RFC 6455 §4)."""

from __future__ import annotations

import pytest

from fastws.exceptions import InvalidHandshake, InvalidStatus
from fastws.handshake import (
    ClientHandshake,
    Headers,
    HeadParser,
    Response,
    ServerHandshake,
    accept_key,
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
