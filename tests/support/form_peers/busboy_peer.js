// A form handler on Node's http server with busboy parsing the body. POST /upload answers
// the same JSON report as starlette_peer.py; /redirect answers 307 to /upload without
// reading the body. busboy decodes header parameters as latin1 unless told otherwise;
// this handler says utf8, as an application taking browser uploads must.
'use strict';

const http = require('http');
const crypto = require('crypto');
const path = require('path');
const busboy = require(path.join(__dirname, 'node_modules', 'busboy'));

function framing(headers) {
  if (headers['transfer-encoding'] !== undefined) {
    return [headers['transfer-encoding'].toLowerCase(), null];
  }
  if (headers['content-length'] !== undefined) {
    return ['content-length', Number(headers['content-length'])];
  }
  return ['none', null];
}

function answer(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}

function upload(req, res) {
  const [how, length] = framing(req.headers);
  let bodyBytes = 0;
  req.on('data', (block) => {
    bodyBytes += block.length;
  });
  let parser;
  try {
    parser = busboy({ headers: req.headers, defParamCharset: 'utf8' });
  } catch (e) {
    answer(res, 400, { error: String(e) });
    req.resume();
    return;
  }
  const parts = [];
  let open = 0;
  let closed = false;
  let failed = null;
  const finish = () => {
    if (!closed || open > 0) return;
    if (failed !== null) {
      answer(res, 400, { error: failed });
      return;
    }
    answer(res, 200, {
      peer: 'busboy',
      method: req.method,
      framing: how,
      content_length: length,
      body_bytes: bodyBytes,
      content_type: req.headers['content-type'] || null,
      parts,
    });
  };
  parser.on('file', (name, stream, info) => {
    const entry = {
      name,
      filename: info.filename,
      content_type: info.mimeType,
      size: 0,
      sha256: null,
    };
    parts.push(entry);
    open += 1;
    const digest = crypto.createHash('sha256');
    stream.on('data', (block) => {
      entry.size += block.length;
      digest.update(block);
    });
    stream.on('end', () => {
      entry.sha256 = digest.digest('hex');
      open -= 1;
      finish();
    });
  });
  parser.on('field', (name, value, info) => {
    parts.push({
      name,
      filename: null,
      content_type: info.mimeType,
      size: Buffer.byteLength(value),
      value,
    });
  });
  parser.on('error', (e) => {
    failed = String(e);
    closed = true;
    open = 0;
    req.unpipe(parser);
    req.resume();
    finish();
  });
  parser.on('close', () => {
    closed = true;
    finish();
  });
  req.pipe(parser);
}

const server = http.createServer((req, res) => {
  const url = req.url.split('?')[0];
  if (url === '/upload') {
    upload(req, res);
  } else if (url === '/redirect') {
    res.writeHead(307, { location: '/upload', 'content-length': 0 });
    res.end();
  } else {
    res.writeHead(404, { 'content-length': 0 });
    res.end();
  }
});
// No limit on how long an upload may take: the tests bound their own time.
server.requestTimeout = 0;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${server.address().port}\n`);
});
// The harness holds our stdin: when it closes (the test dropped us, or died), exit.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
