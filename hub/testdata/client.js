// An outside client of the realtime hub for the hub's Go tests. It connects
// to URL, authenticates with TOKEN, subscribes subscription "s1" to MODELS (a
// comma-separated list), prints every message it receives as one JSON line on
// stdout and exits with status 0 after COUNT messages, or 1 after 10 s.
//
// Usage: node client.js URL TOKEN MODELS COUNT
'use strict';

const WebSocket = require('ws');

const [url, token, models, count] = process.argv.slice(2);
if (!url || !token || !models || !count) {
  console.error('usage: node client.js URL TOKEN MODELS COUNT');
  process.exit(2);
}
const want = Number(count);

const timer = setTimeout(() => {
  console.error(`timed out after 10 s waiting for ${want} messages`);
  process.exit(1);
}, 10000);

const ws = new WebSocket(url);
let received = 0;

ws.on('open', () => {
  ws.send(JSON.stringify({ type: 'authenticate', token }));
});

ws.on('message', (data, isBinary) => {
  if (isBinary) {
    console.error('received a binary frame');
    process.exit(1);
  }
  const msg = JSON.parse(data.toString('utf8'));
  if (msg.type === 'authenticated') {
    ws.send(JSON.stringify({ type: 'subscribe', id: 's1', models: models.split(',') }));
  }
  process.stdout.write(data.toString('utf8') + '\n');
  received++;
  if (received === want) {
    clearTimeout(timer);
    ws.close(1000);
  }
});

ws.on('close', (code, reason) => {
  if (received < want) {
    console.error(`connection closed with ${code} ${reason} after ${received} messages`);
    process.exit(1);
  }
  process.exit(0);
});

ws.on('error', (err) => {
  console.error(`websocket error: ${err.message}`);
  process.exit(1);
});
