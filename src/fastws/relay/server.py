"""The relay server: ``ws://host:port/<topic>`` subscribes and publishes; ``/stats`` is JSON.

A connection to ``/<topic>`` (percent-decoded) is subscribed to that topic and
every message it sends is published there. A connection to ``/`` speaks a
small JSON control protocol in text messages::

    {"subscribe": ["prices", "news"]}
    {"unsubscribe": ["news"]}
    {"publish": "prices", "data": "42"}
    {"subscribe": "prices", "since": 41, "epoch": "9f2c..."}   (one topic; needs envelopes)

History and recovery (``Relay(history=N)``): ``/<topic>?since=41&epoch=9f2c...``
sends one JSON ``subscribed`` notice first (did the recovery work, and the
position), then the missed messages and live ones, raw. ``/?envelope=1`` (or
``/<topic>?envelope=1``) delivers JSON envelopes with the topic and offset of
each message, and a ``subscribed`` notice per subscription; see
``fastws.relay.core`` for the formats. A malformed ``since`` is refused with
400 at the handshake, or closes a control connection with 1008. A raw
``/<topic>?since=`` subscriber is told of a gap by a close with 4002
(``GAP_CLOSE_CODE``: reconnect with the offset you counted), never by JSON in
its stream.

It runs on the callback API (``Listener``): a message is fanned out inside
``data_received``, with no task or queue in between.

Access: ``authorize`` (see ``fastws.relay.auth``) is asked once per topic and
action per connection: at the handshake (``connect``, and ``subscribe`` for
``/<topic>``; denied: 401/403), then at the first control ``subscribe`` of a
topic and the first message published on one (denied: close 1008, or what the
hook's ``Denied`` says). ``origins`` (an allow-list of ``Origin`` values, as
for ``fastws.serve``) refuses other pages with 403.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Awaitable
from typing import Any, Optional, Union
from urllib.parse import parse_qs, unquote

from ..asyncio import Listener, Server, ServerConnection, WebSocket, serve
from ..extensions.permessage_deflate import PerMessageDeflate
from ..frames import CloseCode
from ..handshake import Headers, Request, Response, error_response
from .auth import Authorize, Denied
from .core import Relay

__all__ = ["serve_relay", "RelayListener", "MAX_TOPIC_LENGTH", "MAX_WAITING", "RELAY_COMPRESSION"]

logger = logging.getLogger("fastws.relay")

MAX_TOPIC_LENGTH = 256
"""Longest topic name, in characters; a longer one closes the connection with 1008."""
MAX_WAITING = 256
"""Messages held while an async ``authorize()`` answers; one more closes the connection with 1008."""

RELAY_COMPRESSION = PerMessageDeflate(server_no_context_takeover=True, client_no_context_takeover=True)
"""The relay's permessage-deflate: no context takeover either way. Every
message is compressed once and the same frame goes to every subscriber that
negotiated compression (``PreparedMessage.deflated``); no connection holds a
zlib state between messages, so an idle subscriber costs no compression memory
on either side. Server window 2^12 for every connection (a peer that asks for
a smaller one gets a copy of its own, also made once per message)."""

Check = tuple[str, Optional[str]]  # (action, topic)
Verdict = Optional[Denied]  # None: allowed


def topic_from_path(path: str) -> str:
    """``/a%20b?x=1`` → ``a b``; ``/`` → ``""`` (the control connection)."""
    return unquote(path.split("?", 1)[0].lstrip("/"))


MAX_OFFSET = (1 << 63) - 1
MAX_EPOCH_LENGTH = 64


def check_since(since: Any, epoch: Any) -> tuple[Optional[int], Optional[str]]:
    """A valid ``(since, epoch)``, from JSON or parsed query values; ValueError if not."""
    if since is not None and (type(since) is not int or not 0 <= since <= MAX_OFFSET):
        raise ValueError("since: expected an offset, an integer >= 0")
    if epoch is not None and (not isinstance(epoch, str) or not 0 < len(epoch) <= MAX_EPOCH_LENGTH):
        raise ValueError("epoch: expected a string of 1 to 64 characters")
    if epoch is not None and since is None:
        raise ValueError("epoch without since")
    return since, epoch


def query_options(path: str) -> tuple[Optional[int], Optional[str], bool]:
    """``since``, ``epoch`` and ``envelope`` from a request target's query; ValueError if malformed."""
    query = path.partition("?")[2]
    if not query:
        return None, None, False
    values = parse_qs(query, keep_blank_values=True)
    for name in ("since", "epoch", "envelope"):
        if len(values.get(name, ())) > 1:
            raise ValueError(f"{name} is given twice")
    since_text = values.get("since", [None])[0]
    since: Optional[int] = None
    if since_text is not None:
        if not (since_text.isascii() and since_text.isdigit()) or len(since_text) > 19:
            raise ValueError("since: expected an offset, an integer >= 0")
        since = int(since_text)
    envelope = values.get("envelope", ["0"])[0]
    if envelope not in ("0", "1", "true", "false"):
        raise ValueError("envelope: expected 1 or 0")
    return (*check_since(since, values.get("epoch", [None])[0]), envelope in ("1", "true"))


class RelayListener(Listener):
    """One per connection: publishes what it receives, to its path's topic or by control message."""

    __slots__ = ("relay", "echo", "topic", "authorize", "verdicts", "waiting", "expiry", "envelope")

    def __init__(self, relay: Relay, echo: bool = False, authorize: Optional[Authorize] = None) -> None:
        self.relay = relay
        self.echo = echo
        self.topic = ""
        self.authorize = authorize
        self.verdicts: dict[Check, Verdict] = {}  # authorize()'s answers, once per topic and action
        self.waiting: Optional[list[Union[str, bytes]]] = None  # received while an async answer is awaited
        self.expiry: Optional[asyncio.TimerHandle] = None
        self.envelope = False  # deliveries as JSON envelopes with offsets

    # -- authorization -----------------------------------------------------------

    def check(self, request: Request, checks: list[Check]) -> Union[Verdict, Awaitable[Verdict]]:
        """The first denial among ``checks`` (None: all allowed), asking
        ``authorize`` only what it was not asked on this connection yet; an
        awaitable of it if the hook answers asynchronously."""
        for index, key in enumerate(checks):
            if key not in self.verdicts:
                answer = self._ask(request, key)
                if inspect.isawaitable(answer):
                    return self._check_later(request, checks[index:], key, answer)
                self.verdicts[key] = answer
            verdict = self.verdicts[key]
            if verdict is not None:
                return verdict
        return None

    async def _check_later(self, request: Request, checks: list[Check], key: Check, answer: Awaitable) -> Verdict:
        self.verdicts[key] = await self._settle(key, answer)
        verdict = self.check(request, checks)
        while inspect.isawaitable(verdict):
            verdict = await verdict
        return verdict  # type: ignore[return-value]

    def _ask(self, request: Request, key: Check) -> Union[Verdict, Awaitable[Verdict]]:
        assert self.authorize is not None
        action, topic = key
        try:
            answer = self.authorize(request, topic, action)
        except Denied as denied:
            return denied
        except Exception:
            logger.exception("authorize(%r, %r) failed; denying", topic, action)
            return _failed()
        if inspect.isawaitable(answer):
            return answer  # settled by _check_later
        return None if answer else _refused(key)

    async def _settle(self, key: Check, answer: Awaitable) -> Verdict:
        try:
            value = await answer
        except Denied as denied:
            return denied
        except Exception:
            logger.exception("authorize(%r, %r) failed; denying", key[1], key[0])
            return _failed()
        return None if value else _refused(key)

    # -- connection events -------------------------------------------------------

    def on_open(self, ws: WebSocket) -> None:
        assert isinstance(ws, ServerConnection)
        self.topic = topic_from_path(ws.path)
        if len(self.topic) > MAX_TOPIC_LENGTH:
            ws.close_nowait(CloseCode.POLICY_VIOLATION, "topic name too long")
            return
        expires_at = getattr(self.authorize, "expires_at", None)
        if expires_at is not None and ws.request is not None:
            when = expires_at(ws.request)
            if when is not None:
                delay = max(0.0, when - time.time())
                self.expiry = ws.loop.call_later(delay, self._expired, ws)
        try:
            since, epoch, self.envelope = query_options(ws.path)
        except ValueError as exc:  # process_request refused these already
            ws.close_nowait(CloseCode.POLICY_VIOLATION, str(exc)[:120])
            return
        if self.topic:
            self.relay.subscribe(ws, self.topic, since=since, epoch=epoch, envelope=self.envelope)

    def _expired(self, ws: WebSocket) -> None:
        self.expiry = None
        denied = Denied.expired()
        logger.info("%s token expired; closing (%d)", ws.peer, denied.close_code)
        ws.close_nowait(denied.close_code, denied.reason)

    def on_message(self, ws: WebSocket, message: Union[str, bytes]) -> None:
        if self.waiting is not None:  # an earlier message waits for authorize(): this one goes after it
            if len(self.waiting) >= MAX_WAITING:
                ws.close_nowait(CloseCode.POLICY_VIOLATION, "too many messages while authorizing")
                self.waiting = []
                return
            self.waiting.append(message)
            return
        self.handle(ws, message)

    def on_close(self, ws: WebSocket, code: int, reason: str) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None
        self.waiting = None
        self.relay.unsubscribe(ws)

    def handle(self, ws: WebSocket, message: Union[str, bytes]) -> None:
        """Check and apply one message (publish on the path's topic, or a control message)."""
        if self.topic:
            operations: list[tuple[str, str, Any]] = [("publish", self.topic, message)]
        else:
            parsed = self.parse_control(ws, message)
            if parsed is None:
                return
            operations = parsed
        if self.authorize is not None:
            assert isinstance(ws, ServerConnection) and ws.request is not None
            checks: list[Check] = [(op, topic) for op, topic, _ in operations if op != "unsubscribe"]
            verdict = self.check(ws.request, checks)
            if inspect.isawaitable(verdict):
                self.waiting = []
                ws.loop.create_task(self._apply_later(ws, verdict, operations))
                return
            if verdict is not None:
                self.deny(ws, verdict)
                return
        self.apply(ws, operations)

    async def _apply_later(self, ws: WebSocket, verdict: Awaitable[Verdict], operations: list) -> None:
        denied = await verdict
        if self.waiting is None or not ws.open:
            return  # closed meanwhile
        if denied is not None:
            self.deny(ws, denied)
            return
        self.apply(ws, operations)
        waiting, self.waiting = self.waiting, None
        for index, message in enumerate(waiting):
            if self.waiting is not None:  # waiting again: the rest goes after
                self.waiting.extend(waiting[index:])
                return
            if not ws.open:
                return
            self.handle(ws, message)

    def deny(self, ws: WebSocket, denied: Denied) -> None:
        logger.info("%s denied: %s", ws.peer, denied.reason)
        ws.close_nowait(denied.close_code, denied.reason[:120])

    def apply(self, ws: WebSocket, operations: list[tuple[str, str, Any]]) -> None:
        relay = self.relay
        exclude = None if self.echo else ws
        for op, topic, argument in operations:
            if op == "publish":
                relay.publish(topic, argument, exclude=exclude)
            elif op == "subscribe":
                since, epoch = argument or (None, None)
                relay.subscribe(ws, topic, since=since, epoch=epoch, envelope=self.envelope)
            else:
                relay.unsubscribe(ws, topic)

    def parse_control(self, ws: WebSocket, message: Union[str, bytes]) -> Optional[list[tuple[str, str, Any]]]:
        """One JSON control message as operations; anything else closes with 1003 or 1008."""
        if not isinstance(message, str):
            ws.close_nowait(CloseCode.UNSUPPORTED_DATA, "control messages are JSON text")
            return None
        operations: list[tuple[str, str, Any]] = []
        try:
            command = json.loads(message)
            if not isinstance(command, dict) or not command:
                raise ValueError("not a JSON object")
            for name, value in command.items():
                if name in ("subscribe", "unsubscribe"):
                    topics = [value] if isinstance(value, str) else value
                    if not isinstance(topics, list) or not all(_valid_topic(t) for t in topics):
                        raise ValueError(f"{name}: expected a topic or a list of topics")
                    operations.extend((name, topic, None) for topic in topics)
                elif name == "publish":
                    data = command.get("data")
                    if not _valid_topic(value) or not isinstance(data, str):
                        raise ValueError('publish: expected {"publish": topic, "data": text}')
                    operations.append(("publish", value, data))
                elif name not in ("data", "since", "epoch"):
                    raise ValueError(f"unknown command {name!r}")
            if "since" in command or "epoch" in command:
                position = check_since(command.get("since"), command.get("epoch"))
                subscribing = [index for index, operation in enumerate(operations) if operation[0] == "subscribe"]
                if len(subscribing) != 1:
                    raise ValueError("since: subscribe to one topic at a time")
                if not self.envelope:
                    raise ValueError("since needs envelopes: connect to /?envelope=1")
                index = subscribing[0]
                operations[index] = ("subscribe", operations[index][1], position)
        except ValueError as exc:  # json.JSONDecodeError is one
            logger.info("%s bad control message: %s", ws.peer, exc)
            ws.close_nowait(CloseCode.POLICY_VIOLATION, f"bad control message: {exc}"[:120])
            return None
        return operations


def _refused(key: Check) -> Denied:
    action, topic = key
    if topic is None:
        return Denied("connection refused")
    return Denied(f"not allowed to {action} on {topic!r}"[:100])


def _refusal(denied: Denied) -> Response:
    headers = [("WWW-Authenticate", "Bearer")] if denied.status == 401 else []
    return error_response(denied.status, denied.reason, headers)


def _failed() -> Denied:
    return Denied("authorization failed", status=500, close_code=CloseCode.INTERNAL_ERROR)


def _valid_topic(topic: Any) -> bool:
    return isinstance(topic, str) and 0 < len(topic) <= MAX_TOPIC_LENGTH


class serve_relay:
    """Run a relay: ``async with serve_relay("127.0.0.1", 3000) as server: ...``.

    ``relay`` (a ``Relay``; a new one by default) holds the topics and the
    slow-consumer settings, and the backplane if any (started and stopped
    here). ``echo`` sends publishers their own messages too. Rates are sampled
    every second and logged every ``log_interval`` seconds. Other keywords go
    to ``fastws.serve`` (limits, ``ssl``, ``reuse_port``, ``origins``, ...).
    ``compression`` is ``RELAY_COMPRESSION`` by default: permessage-deflate
    without context takeover, so each message is compressed once for all the
    subscribers that negotiated it, while the others share one uncompressed
    frame; ``compression=None`` turns it off.

    ``authorize(request, topic, action)`` (sync or async; see
    ``fastws.relay.auth`` for ``TokenAuth`` and ``JWTAuth``) decides who may
    connect, subscribe and publish; with it, ``/stats`` also needs the
    credentials of a connection. ``origins`` (e.g. ``["https://app.example"]``;
    ``None`` in the list admits clients that send no ``Origin``) refuses
    WebSocket handshakes from other pages with 403.
    """

    def __init__(
        self,
        host: Optional[str] = "127.0.0.1",
        port: int = 0,
        *,
        relay: Optional[Relay] = None,
        echo: bool = False,
        log_interval: Optional[float] = 10.0,
        authorize: Optional[Authorize] = None,
        **options: Any,
    ) -> None:
        self.relay = relay if relay is not None else Relay()
        self.authorize = authorize
        self.log_interval = log_interval
        self._ticker: Optional[asyncio.TimerHandle] = None
        self._ticks = 0
        options.setdefault("compression", RELAY_COMPRESSION)
        relay_ = self.relay
        self._serve = serve(
            host=host,
            port=port,
            listener=lambda: RelayListener(relay_, echo, authorize),
            process_request=self.process_request,
            **options,
        )

    def process_request(
        self, ws: ServerConnection, request: Request
    ) -> Union[Optional[Response], Awaitable[Optional[Response]]]:
        """Authorization of the handshake; plain HTTP: ``/stats`` is the JSON
        statistics, anything else a hint."""
        upgrade = "websocket" in request.headers.tokens("Upgrade")
        if upgrade:
            try:
                query_options(request.path)
            except ValueError as exc:
                return error_response(400, str(exc))
        if self.authorize is not None and (upgrade or topic_from_path(request.path) == "stats"):
            listener = ws.listener if upgrade else None
            if not isinstance(listener, RelayListener):
                listener = RelayListener(self.relay, authorize=self.authorize)  # for /stats: asked, then dropped
            checks: list[Check] = [("connect", None)]
            topic = topic_from_path(request.path)
            if upgrade and _valid_topic(topic):
                checks.append(("subscribe", topic))
            verdict = listener.check(request, checks)
            if inspect.isawaitable(verdict):
                return self._answer_later(ws, request, upgrade, verdict)
            if verdict is not None:
                return _refusal(verdict)
        return None if upgrade else self._http(request)

    async def _answer_later(
        self, ws: ServerConnection, request: Request, upgrade: bool, verdict: Awaitable[Verdict]
    ) -> Optional[Response]:
        denied = await verdict
        if denied is not None:
            return _refusal(denied)
        return None if upgrade else self._http(request)

    def _http(self, request: Request) -> Response:
        if topic_from_path(request.path) == "stats":
            body = json.dumps(self.relay.stats.snapshot()).encode()
            return Response(200, Headers([("Content-Type", "application/json")]), body)
        hint = b"fastws relay: connect to ws://<host>/<topic>; statistics at /stats\n"
        return Response(200, Headers([("Content-Type", "text/plain; charset=utf-8")]), hint)

    def _tick(self) -> None:
        stats = self.relay.stats
        stats.sample()
        self._ticks += 1
        if self._ticks % 10 == 0:
            self.relay.expire_history()
        if self.log_interval and self._ticks % max(1, round(self.log_interval)) == 0:
            backplane = self.relay.backplane
            logger.info(
                "relay: %d subscribers, %d topics, in %.0f/s, out %.0f/s, dropped %d, closed slow %d%s",
                self.relay.subscriber_count,
                len(self.relay.topics()),
                stats.rate_in,
                stats.rate_out,
                stats.dropped,
                stats.closed_slow,
                f", redis {backplane.state}" if backplane is not None else "",
            )
        self._ticker = asyncio.get_running_loop().call_later(1.0, self._tick)

    async def __aenter__(self) -> Server:
        if self.relay.backplane is not None:
            await self.relay.backplane.start()
        server = await self._serve.__aenter__()
        self._ticker = asyncio.get_running_loop().call_later(1.0, self._tick)
        return server

    async def __aexit__(self, *exc_info: Any) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        await self._serve.__aexit__(*exc_info)
        if self.relay.backplane is not None:
            await self.relay.backplane.close()
