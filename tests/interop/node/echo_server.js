#!/usr/bin/env node
'use strict';
// Node ws echo server for the fastws interop tests.
//   node echo_server.js [--deflate] [--protocols=a,b]
// Binds 127.0.0.1 on an ephemeral port and prints "listening PORT" once bound.
// --deflate enables permessage-deflate (compressing every message); off by default.
// --protocols lists the subprotocols it accepts, in its order of preference.
// Reports each connection as {"event": "connection", ...} (see echo_peer.js).
// Exits when stdin closes.
const { WebSocketServer } = require('ws');
const { attachEchoPeer, exitWithStdin, report, parseList, LIMITS } = require('./echo_peer');

const args = process.argv.slice(2);
const protocols = parseList(args, 'protocols');

const server = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  perMessageDeflate: args.includes('--deflate') ? { threshold: 0 } : false,
  handleProtocols: (offered) => protocols.find((p) => offered.has(p)) || false,
  ...LIMITS,
});

server.on('connection', (ws, request) => {
  const path = request.url;
  report({
    event: 'connection',
    path,
    protocol: ws.protocol,
    extensions: ws.extensions,
    offeredExtensions: request.headers['sec-websocket-extensions'] || '',
  });
  attachEchoPeer(ws, path);
});
server.on('listening', () => process.stdout.write(`listening ${server.address().port}\n`));
server.on('error', (err) => {
  console.error(err);
  process.exit(2);
});

exitWithStdin();
