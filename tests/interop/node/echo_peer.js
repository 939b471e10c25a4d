'use strict';
// Behaviour shared by the Node ws peers of tests/interop/test_node_ws.py.
//
// A peer echoes every message (text as text, binary as binary). A text message
// starting with "\u0000cmd " carries a JSON command instead, so the Python side
// can make the Node side act first:
//   {"op": "close", "code": 4000, "reason": "..."}  close the connection
//   {"op": "ping", "data": "..."}                   ping, then send "pong <data>"
//   {"op": "send", "text": "..."}                   send a text message
// Events are written to stdout as JSON lines: {"event": "...", "path": ..., ...}.

const COMMAND_PREFIX = '\u0000cmd ';

function report(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

function runCommand(ws, command) {
  switch (command.op) {
    case 'close':
      ws.close(command.code, command.reason);
      break;
    case 'ping':
      ws.once('pong', (data) => ws.send(`pong ${data.toString('utf8')}`));
      ws.ping(command.data);
      break;
    case 'send':
      ws.send(command.text);
      break;
    default:
      ws.send(`unknown command ${command.op}`);
  }
}

function attachEchoPeer(ws, path) {
  ws.on('message', (data, isBinary) => {
    // Check the first byte before decoding: large messages are echoed untouched.
    if (!isBinary && data.length > 0 && data[0] === 0) {
      const text = data.toString('utf8');
      if (text.startsWith(COMMAND_PREFIX)) {
        runCommand(ws, JSON.parse(text.slice(COMMAND_PREFIX.length)));
        return;
      }
    }
    ws.send(data, { binary: isBinary });
  });
  ws.on('close', (code, reason) => report({ event: 'close', path, code, reason: reason.toString('utf8') }));
  ws.on('error', (err) => report({ event: 'error', path, message: err.message }));
}

// Options both peers use: no limits that the tests could trip over.
const LIMITS = { maxPayload: 64 * 1024 * 1024 };

function parseList(args, name) {
  const arg = args.find((a) => a.startsWith(`--${name}=`));
  return arg ? arg.slice(name.length + 3).split(',').filter(Boolean) : [];
}

// The peers live as long as their parent keeps their stdin open.
function exitWithStdin() {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}

module.exports = { attachEchoPeer, exitWithStdin, report, parseList, LIMITS };
