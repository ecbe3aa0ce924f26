// Issue 13, inputs 6 and 7: what a live body is, is told by its bytes. Good MPEG-TS labelled
// text/html plays; an HTML page labelled video/mp2t is refused; Icecast-style raw ADTS radio
// (audio/aacp, icy-* headers, stray 0x47 bytes, any read sizes) passes through from byte 0,
// at once, with the upstream's content type.
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { sniff, SNIFF_BYTES } from '../src/streams/mpegts/sniff.js';
import { httpRequest } from './support/http-request.js';
import { startOrigin, type Origin } from './support/origin.js';
import { startProxy, type TestProxy } from './support/proxy.js';
import { openViewer, waitFor } from './support/ts-viewer.js';
import { createStream } from './support/create-stream.js';

const run = promisify(execFile);

describe('content by bytes, raw passthrough (issue 13: inputs 6, 7)', function () {
  this.timeout(60_000);
  let origin: Origin;
  let proxy: TestProxy;
  let radio: Buffer;
  let dir: string;
  let radioServer: http.Server;
  let radioBase: string;
  let radioRequests = 0;

  before(async () => {
    origin = await startOrigin();
    proxy = await startProxy({ STREAM_RETRY_ATTEMPTS: '0', SHARED_STREAM_GRACE: '0.2' });
    dir = mkdtempSync(path.join(os.tmpdir(), 'issue13-radio-'));
    const file = path.join(dir, 'radio.aac');
    await run(process.env.FFMPEG_PATH ?? 'ffmpeg', ['-hide_banner', '-loglevel', 'error', '-f', 'lavfi', '-i',
      'sine=frequency=440:duration=12', '-c:a', 'aac', '-b:a', '128k', '-f', 'adts', '-y', file]);
    radio = readFileSync(file);
    // An Icecast-style server: raw ADTS paced at its byte rate, in reads of `?chunk=` bytes.
    radioServer = http.createServer((req, res) => {
      radioRequests++;
      const chunk = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('chunk') ?? '1000');
      res.writeHead(200, { 'Content-Type': 'audio/aacp', 'icy-name': 'Test FM', 'icy-br': '128', 'icy-metaint': '0' });
      const perTick = Math.max(1, Math.round(radio.length / 12 / 20)); // 12 s of audio, 20 ticks/s
      let sent = 0;
      const timer = setInterval(() => {
        const until = Math.min(radio.length, sent + perTick);
        while (sent < until && !res.destroyed) {
          const n = Math.min(chunk, until - sent);
          res.write(radio.subarray(sent, sent + n));
          sent += n;
        }
        if (sent >= radio.length) sent = 0; // loop, like a station
      }, 50);
      res.once('close', () => clearInterval(timer));
    });
    await new Promise<void>((r) => radioServer.listen(0, '127.0.0.1', r));
    radioBase = `http://127.0.0.1:${(radioServer.address() as AddressInfo).port}`;
  });
  after(async () => {
    radioServer?.closeAllConnections();
    radioServer?.close();
    rmSync(dir, { recursive: true, force: true });
    await proxy.close();
    await origin.close();
  });

  it('sniff: TS needs a run of sync bytes; documents are told by their first byte', () => {
    const ts = Buffer.alloc(188 * 6, 0xff);
    for (let i = 3; i < ts.length; i += 188) ts[i] = 0x47;
    expect(sniff(ts)).to.deep.equal({ kind: 'ts', offset: 3 });
    for (const doc of ['<html>', '  <?xml', '{"a":1}', '[1]', '#EXTM3U\n', '\ufeff<html>']) {
      expect(sniff(Buffer.from(doc)).kind, doc).to.equal('document');
    }
    expect(sniff(Buffer.from('#EXT')).kind).to.equal('need_more');
    const stray = Buffer.alloc(SNIFF_BYTES, 0x11);
    stray[10] = 0x47;
    stray[198] = 0x47; // two in a row are not a run
    expect(sniff(stray).kind).to.equal('other');
    expect(sniff(radio.subarray(0, 2000)).kind).to.equal('other');
  });

  it('good MPEG-TS labelled text/html plays, with one provider request', async () => {
    const p = '/live/mislabeled.ts';
    const id = await createStream(proxy.base, origin.url(`${p}?type=text/html`));
    const v = openViewer(proxy.url(`/stream/${id}`));
    try {
      expect(await v.status).to.equal(200);
      expect((await v.headers)['content-type']).to.equal('video/mp2t');
      await waitFor(() => v.bytes() >= 188 * 200, 15_000, 'TS bytes');
      expect(v.misaligned()).to.equal(0);
      expect(origin.totalRequests(p)).to.equal(1);
    } finally {
      v.close();
    }
  });

  it('an HTML page or a playlist labelled video/mp2t is not media: 502 JSON', async () => {
    const pages = http.createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'video/mp2t' });
      res.end(req.url?.includes('m3u') ? '#EXTM3U\n#EXTINF:-1,x\nhttp://x/1.ts\n' : '<html><body>Login required</body></html>');
    });
    await new Promise<void>((r) => pages.listen(0, '127.0.0.1', r));
    try {
      const base = `http://127.0.0.1:${(pages.address() as AddressInfo).port}`;
      for (const p of ['/page.ts', '/list.m3u.ts']) {
        const res = await httpRequest(proxy.url(`/stream/${await createStream(proxy.base, base + p)}`));
        expect(res.status, p).to.equal(502);
        expect(JSON.parse(res.body.toString()).code).to.equal('UPSTREAM_UNAVAILABLE');
      }
    } finally {
      pages.close();
    }
  });

  it('raw ADTS radio passes through from byte 0, labelled audio/aacp, whatever the read sizes', async () => {
    // 188+1 and 187 put stray sync-looking bytes at packet distances across reads.
    for (const chunk of [1, 189, 187, 4096, 65536]) {
      const id = await createStream(proxy.base, `${radioBase}/stream?chunk=${chunk}`);
      const v = openViewer(proxy.url(`/stream/${id}`), { keepBody: true });
      try {
        expect(await v.status).to.equal(200);
        expect((await v.headers)['content-type']).to.equal('audio/aacp');
        await waitFor(() => v.bytes() >= 16_000, 15_000, `radio bytes (chunk ${chunk})`);
        const got = v.body();
        expect(got.equals(radio.subarray(0, got.length)), `byte-exact from byte 0 (chunk ${chunk})`).to.equal(true);
      } finally {
        v.close();
      }
    }
  });

  it('a second listener joins a running raw stream and gets the same bytes as the first', async () => {
    const id = await createStream(proxy.base, `${radioBase}/stream?chunk=500&shared`);
    const before = radioRequests;
    const a = openViewer(proxy.url(`/stream/${id}`), { keepBody: true });
    try {
      await waitFor(() => a.bytes() >= 8000, 15_000, 'first listener bytes');
      const b = openViewer(proxy.url(`/stream/${id}`), { keepBody: true });
      try {
        expect((await b.headers)['content-type']).to.equal('audio/aacp');
        await waitFor(() => b.bytes() >= 8000, 15_000, 'second listener bytes');
        const bb = b.body();
        const idx = a.body().indexOf(bb.subarray(0, 64));
        expect(idx, 'b is a continuation of a').to.be.greaterThan(-1);
        expect(radioRequests - before).to.equal(1);
        expect(bb.includes(Buffer.from([0x47, 0x1f, 0xff, 0x10]))).to.equal(false); // no TS keep-alive in audio
      } finally {
        b.close();
      }
    } finally {
      a.close();
    }
  });
});
