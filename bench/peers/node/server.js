// Benchmark peer: Node.js with only the built-in http module.
//
//     node bench/peers/node/server.js --port 8004
//     node bench/peers/node/server.js --port 8004 --cert cert.pem --key key.pem   (https)
//
// GET /count?n=N            N events (event counter, id i, data i), then the stream ends
// GET /events               subscribe (": subscribed" once registered)
// POST /publish?n=M&size=B  publish M events of B bytes ("x" * B, event bench)
// POST /pub                 publish the body as one event
// GET /shape?kind=K&n=N     N events of the shapes users write (bench/apps/conduit_bench.py):
//                           seed, fstring (Date.now() / 1000), json (JSON.stringify of a
//                           small object), async (seed, from an async generator that
//                           awaits a resolved promise every 100 events)
//
// The idiomatic shape: one res.write() per event, pausing on backpressure ('drain') for
// /count; a Set of subscriber responses for the broadcast, each event formatted once and
// written to every subscriber (Node buffers what the socket does not take yet).
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');

function option(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const host = option('--host', '127.0.0.1');
const port = parseInt(option('--port', '8004'), 10);

const SSE_HEADERS = {
  'Content-Type': 'text/event-stream',
  'Cache-Control': 'no-cache',
  'X-Accel-Buffering': 'no',
};

const subscribers = new Set();
let nextId = 1;

function publishOne(data) {
  const id = nextId++;
  const lines = data.split(/\r\n|\r|\n/).map((line) => `data: ${line}\n`).join('');
  const frame = `event: bench\nid: ${id}\n${lines}\n`;
  for (const res of subscribers) res.write(frame);
  return id;
}

function json(res, body) {
  const text = JSON.stringify(body);
  res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function count(req, res, n) {
  res.writeHead(200, SSE_HEADERS);
  let i = 1;
  const pump = () => {
    while (i <= n) {
      const ok = res.write(`event: counter\nid: ${i}\ndata: ${i}\n\n`);
      i++;
      if (!ok) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  res.on('close', () => { i = n + 1; });
  pump();
}

const SHAPES = {
  seed: (i) => `event: token\nid: ${i}\ndata: token ${i}\n\n`,
  fstring: (i) => `event: time\nid: ${i}\ndata: Current time: ${Date.now() / 1000}\n\n`,
  json: (i) => `event: json\nid: ${i}\ndata: ${JSON.stringify({ i, token: 'hello', done: false })}\n\n`,
};

function shape(req, res, kind, n) {
  res.writeHead(200, SSE_HEADERS);
  const format = SHAPES[kind] || SHAPES.seed;
  let i = 1;
  const pump = () => {
    while (i <= n) {
      const ok = res.write(format(i));
      i++;
      if (!ok) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  res.on('close', () => { i = n + 1; });
  pump();
}

async function* tokens(n) {
  for (let i = 1; i <= n; i++) {
    if (i % 100 === 0) await Promise.resolve();
    yield `event: token\nid: ${i}\ndata: token ${i}\n\n`;
  }
}

async function shapeAsync(req, res, n) {
  res.writeHead(200, SSE_HEADERS);
  let closed = false;
  let wake = null;
  res.on('close', () => { closed = true; if (wake) wake(); });
  for await (const frame of tokens(n)) {
    if (closed) return;
    if (!res.write(frame)) {
      await new Promise((resolve) => { wake = resolve; res.once('drain', resolve); });
      wake = null;
    }
  }
  res.end();
}

function events(req, res) {
  res.writeHead(200, SSE_HEADERS);
  subscribers.add(res);
  res.on('close', () => subscribers.delete(res));
  res.write(': subscribed\n\n');
}

const cert = option('--cert', null);
const handler = (req, res) => {
  const url = new URL(req.url, 'http://bench');
  const q = url.searchParams;
  if (req.method === 'GET' && url.pathname === '/count') {
    count(req, res, parseInt(q.get('n') || '10000', 10));
  } else if (req.method === 'GET' && url.pathname === '/shape') {
    const n = parseInt(q.get('n') || '10000', 10);
    if (q.get('kind') === 'async') shapeAsync(req, res, n);
    else shape(req, res, q.get('kind') || 'seed', n);
  } else if (req.method === 'GET' && url.pathname === '/events') {
    events(req, res);
  } else if (req.method === 'POST' && url.pathname === '/publish') {
    req.resume();
    req.on('end', () => {
      const n = parseInt(q.get('n') || '1', 10);
      const payload = 'x'.repeat(parseInt(q.get('size') || '64', 10));
      for (let k = 0; k < n; k++) publishOne(payload);
      json(res, { published: n });
    });
  } else if (req.method === 'POST' && url.pathname === '/pub') {
    const parts = [];
    req.on('data', (part) => parts.push(part));
    req.on('end', () => json(res, { id: publishOne(Buffer.concat(parts).toString('utf8')) }));
  } else {
    res.writeHead(404, { 'Content-Type': 'text/plain', 'Content-Length': 10 });
    res.end('not found\n');
  }
};
const server = cert
  ? https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(option('--key', cert)) },
    handler)
  : http.createServer(handler);

// No timeouts on long-lived streams: the benchmark holds idle subscribers.
server.requestTimeout = 0;
server.headersTimeout = 60000;
server.keepAliveTimeout = 60000;
server.listen({ host, port, backlog: 4096 });

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
