#!/usr/bin/env node
'use strict';
// Node ws echo client for the fastws interop tests.
//   node echo_client.js URL [--deflate] [--protocols=a,b] [--timeout=SECONDS]
// Connects, reports {"event": "open", ...}, echoes until the connection closes,
// reports {"event": "close", ...} and exits 0. Exits 1 on an error, 3 on timeout.
// --deflate offers permessage-deflate (ws offers it by default; here it is opt-in).
const WebSocket = require('ws');
const { attachEchoPeer, report, parseList, LIMITS } = require('./echo_peer');

const args = process.argv.slice(2);
const url = args.find((a) => !a.startsWith('--'));
const timeoutArg = args.find((a) => a.startsWith('--timeout='));
const timeoutSeconds = timeoutArg ? parseFloat(timeoutArg.slice('--timeout='.length)) : 60;

setTimeout(() => {
  report({ event: 'timeout', seconds: timeoutSeconds });
  process.exit(3);
}, timeoutSeconds * 1000).unref();

const ws = new WebSocket(url, parseList(args, 'protocols'), {
  perMessageDeflate: args.includes('--deflate'),
  ...LIMITS,
});
const path = new URL(url).pathname;
ws.on('open', () => report({ event: 'open', path, protocol: ws.protocol, extensions: ws.extensions }));
attachEchoPeer(ws, path);
ws.on('close', () => process.exit(0));
ws.on('error', () => process.exit(1));
