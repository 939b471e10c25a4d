#!/usr/bin/env node
'use strict';
// Node ws echo clients for the fastws interop tests, any number in one process.
//   node echo_client.js
// Prints "ready", then opens one client per JSON line read on stdin:
//   {"url": "ws://127.0.0.1:PORT/path", "protocols": ["chat"], "deflate": false}
// Each client reports {"event": "open", "path": ..., "protocol": ..., "extensions": ...}
// and then echoes as echo_peer.js says. permessage-deflate is offered only with
// "deflate": true (ws offers it by default). Exits when stdin closes.
const readline = require('readline');
const WebSocket = require('ws');
const { attachEchoPeer, exitWithStdin, report, LIMITS } = require('./echo_peer');

function connect({ url, protocols = [], deflate = false }) {
  const path = new URL(url).pathname;
  const ws = new WebSocket(url, protocols, { perMessageDeflate: deflate, ...LIMITS });
  ws.on('open', () => report({ event: 'open', path, protocol: ws.protocol, extensions: ws.extensions }));
  attachEchoPeer(ws, path);
}

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim()) connect(JSON.parse(line));
});
exitWithStdin();
process.stdout.write('ready\n');
