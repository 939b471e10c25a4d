"""A Starlette chat room: every message goes to everyone in the room.

An ordinary Starlette app, unaware of fastws; run it on fastws through uvicorn:

    uvicorn examples.chat:app --ws fastws.uvicorn:WebSocketProtocol

then connect to ws://127.0.0.1:8000/ws?name=ann (or open http://127.0.0.1:8000/).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

PAGE = """<!doctype html>
<title>fastws chat</title>
<p>A WebSocket chat. Messages:</p>
<ul id="log"></ul>
<form id="form"><input id="text" autocomplete="off"><button>Send</button></form>
<script>
  const ws = new WebSocket(`ws://${location.host}/ws?name=guest${Math.floor(Math.random() * 1000)}`);
  ws.onmessage = (event) => {
    const item = document.createElement("li");
    item.textContent = event.data;
    document.getElementById("log").append(item);
  };
  document.getElementById("form").onsubmit = (event) => {
    event.preventDefault();
    ws.send(document.getElementById("text").value);
    document.getElementById("text").value = "";
  };
</script>
"""

members: set[WebSocket] = set()


async def broadcast(text: str) -> None:
    for member in list(members):
        try:
            await member.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError):
            members.discard(member)  # gone; its own handler cleans up too


async def homepage(request):
    return HTMLResponse(PAGE)


async def chat(websocket: WebSocket) -> None:
    name = websocket.query_params.get("name", "anonymous")
    await websocket.accept()
    members.add(websocket)
    await broadcast(f"{name} joined")
    try:
        while True:
            await broadcast(f"{name}: {await websocket.receive_text()}")
    except WebSocketDisconnect:
        pass
    finally:
        members.discard(websocket)
    await broadcast(f"{name} left")


app = Starlette(routes=[Route("/", homepage), WebSocketRoute("/ws", chat)])
