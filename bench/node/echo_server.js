// Node ws echo server for bench/bench_echo.py: every message goes back as it
// came (binary as binary, text as text). bufferutil (masking in C) must load:
// the point is to measure ws at its fastest.
//
//   node echo_server.js PORT [HOST]
'use strict';

const path = require('path');
const ws = require('ws');

const port = Number(process.argv[2] || 9001);
const host = process.argv[3] || '127.0.0.1';

// bufferutil silently falls back to JavaScript masking when its native
// binding does not load (and ws would then use that): load the binding the way
// bufferutil does, but without the fallback, so a broken install fails loudly.
try {
  require('node-gyp-build')(path.dirname(require.resolve('bufferutil')));
} catch (err) {
  console.error('bufferutil native binding failed to load: ' + err.message);
  process.exit(2);
}

const server = new ws.WebSocketServer({
  host,
  port,
  perMessageDeflate: false,
  maxPayload: 64 * 1024 * 1024,
  clientTracking: false,
});

server.on('connection', (socket) => {
  socket.on('message', (data, isBinary) => {
    socket.send(data, { binary: isBinary });
  });
  socket.on('error', () => {});
});

server.on('listening', () => {
  const wsVersion = require(path.join(path.dirname(require.resolve('ws')), 'package.json')).version;
  console.error(`node ${process.version} ws ${wsVersion} bufferutil listening on ${host}:${port}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
