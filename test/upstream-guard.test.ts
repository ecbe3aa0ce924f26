// Issue 13, inputs 5 and 9: redirects into loopback / link-local addresses are followed only
// when the original URL already pointed there (VOD, live, /test-connection); upstream TLS
// certificates are verified unless the operator or the stream opts out, on every path
// including FFmpeg.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { isInternalAddress } from '../src/streams/sources/internal-address.js';
import { httpRequest } from './support/http-request.js';
import { startOrigin, type Origin } from './support/origin.js';
import { startProxy, type TestProxy } from './support/proxy.js';
import { openViewer, waitFor } from './support/ts-viewer.js';
import { createStream } from './support/create-stream.js';

const SECRET = 'SECRET-BODY-OF-A-LOOPBACK-SERVICE';

async function testConnection(proxy: TestProxy, body: Record<string, unknown>): Promise<{ success: boolean; error?: string; status_code?: number }> {
  const res = await fetch(proxy.url('/test-connection'), { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  return (await res.json()) as { success: boolean; error?: string };
}

function listen(server: http.Server, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve((server.address() as AddressInfo).port));
  });
}

/** This box's first non-loopback, non-link-local IPv4 address (a "LAN/public" host), if any. */
function outsideAddress(): string | null {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !isInternalAddress(a.address)) return a.address;
  }
  return null;
}

describe('redirects into the box and TLS verification (issue 13: inputs 5, 9)', function () {
  this.timeout(60_000);
  let origin: Origin;
  let proxy: TestProxy;
  const servers: http.Server[] = [];

  before(async () => {
    origin = await startOrigin();
    proxy = await startProxy({ STREAM_RETRY_ATTEMPTS: '0', SHARED_STREAM_GRACE: '0.2', DEFAULT_CONNECTION_TIMEOUT: '3' });
  });
  after(async () => {
    for (const s of servers) s.closeAllConnections(), s.close();
    await proxy.close();
    await origin.close();
  });

  it('classifies loopback, link-local and unspecified addresses (v4, v6, mapped)', () => {
    for (const a of ['127.0.0.1', '127.5.6.7', '0.0.0.0', '169.254.169.254', '::1', '::', 'fe80::1', '[fe80::abcd]', '::ffff:127.0.0.1', '::ffff:169.254.1.1']) {
      expect(isInternalAddress(a), a).to.equal(true);
    }
    for (const a of ['192.168.1.20', '10.0.0.1', '8.8.8.8', '2001:db8::1', 'fd00::1', '::ffff:8.8.8.8']) expect(isInternalAddress(a), a).to.equal(false);
  });

  describe('redirects', () => {
    let outside: string | null;
    let redirector: string; // http://<outside>:<port>
    let secretPort: number;
    let secretHits = 0;

    before(async function () {
      outside = outsideAddress();
      if (!outside) return this.skip(); // no non-loopback interface on this box
      const secret = http.createServer((_req, res) => {
        secretHits++;
        res.writeHead(200, { 'Content-Type': 'video/mp4', 'Content-Length': SECRET.length });
        res.end(SECRET);
      });
      servers.push(secret);
      secretPort = await listen(secret, '127.0.0.1');
      // A "provider" on a non-loopback address that redirects wherever ?to= says.
      const red = http.createServer((req, res) => {
        const to = new URL(req.url ?? '/', 'http://x').searchParams.get('to') ?? '/';
        if (to.startsWith('pass:')) return void http.get(origin.url(to.slice(5)), (up) => (res.writeHead(up.statusCode ?? 502, up.headers), up.pipe(res)));
        res.writeHead(302, { Location: to.replace('SECRET_PORT', String(secretPort)) });
        res.end();
      });
      servers.push(red);
      redirector = `http://${outside}:${await listen(red, outside)}`;
    });

    const inside = [
      'http://127.0.0.1:SECRET_PORT/x.mp4', 'http://localhost:SECRET_PORT/x.mp4', 'http://[::1]:SECRET_PORT/x.mp4',
      'http://169.254.169.254/latest/meta-data/', 'http://0.0.0.0:SECRET_PORT/x.mp4', 'http://127.1.2.3:SECRET_PORT/x.mp4',
    ];

    it('VOD, live and /test-connection refuse a redirect from outside into loopback or link-local', async () => {
      for (const target of inside) {
        for (const shape of ['/movie/1/2/3.mp4', '/live/1.ts']) {
          const url = `${redirector}${shape}?to=${encodeURIComponent(target)}`;
          const id = await createStream(proxy.base, { url });
          const res = await httpRequest(proxy.url(`/stream/${id}`));
          expect(res.status, `${shape} → ${target}`).to.equal(502);
          expect(res.body.toString()).to.not.include(SECRET);
        }
        const tc = await testConnection(proxy, { url: `${redirector}/t?to=${encodeURIComponent(target)}` });
        expect(tc.success, target).to.equal(false);
        expect(tc.error).to.match(/loopback or link-local/);
      }
      expect(secretHits).to.equal(0);
    });

    it('LAN and loopback upstreams named directly keep working, redirects among them included', async () => {
      // loopback → loopback: the original URL already pointed inside
      const vod = await createStream(proxy.base, { url: origin.url('/redirect?to=/movie.mp4') });
      const res = await httpRequest(proxy.url(`/stream/${vod}`));
      expect(res.status).to.equal(200);
      expect(res.body.length).to.be.greaterThan(1000);
      const direct = await createStream(proxy.base, { url: `http://127.0.0.1:${secretPort}/direct.mp4` });
      expect((await httpRequest(proxy.url(`/stream/${direct}`))).body.toString()).to.equal(SECRET);
      // outside → outside (a LAN tuner's own redirect)
      const lan = await createStream(proxy.base, { url: `${redirector}/movie/a.mp4?to=${encodeURIComponent(`${redirector}/movie/b.mp4?to=pass:/movie.mp4`)}` });
      const lanRes = await httpRequest(proxy.url(`/stream/${lan}`));
      expect(lanRes.status).to.equal(200);
      const tc = await testConnection(proxy, { url: origin.url('/redirect?to=/live.ts') });
      expect(tc.success).to.equal(true);
    });
  });

  describe('TLS verification', () => {
    let base: string; // https://127.0.0.1:<port>, self-signed, relays the origin
    let dir: string;

    before(async () => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'issue13-tls-'));
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(dir, 'k.pem'),
        '-out', path.join(dir, 'c.pem'), '-days', '2', '-subj', '/CN=127.0.0.1'], { stdio: 'ignore' });
      const server = https.createServer({ key: readFileSync(path.join(dir, 'k.pem')), cert: readFileSync(path.join(dir, 'c.pem')) }, (req, res) => {
        const up = http.get(origin.url(req.url ?? '/'), { headers: { range: req.headers.range ?? '' } }, (o) => {
          res.writeHead(o.statusCode ?? 502, o.headers);
          o.pipe(res);
        });
        res.once('close', () => up.destroy());
      });
      servers.push(server as unknown as http.Server);
      base = `https://127.0.0.1:${await listen(server as unknown as http.Server, '127.0.0.1')}`;
    });
    after(() => rmSync(dir, { recursive: true, force: true }));

    it('a self-signed provider fails by default on live, VOD and /test-connection', async () => {
      const live = await createStream(proxy.base, { url: `${base}/live/tls-default.ts` });
      expect((await httpRequest(proxy.url(`/stream/${live}`))).status).to.equal(502);
      const vod = await createStream(proxy.base, { url: `${base}/movie.mp4` });
      expect((await httpRequest(proxy.url(`/stream/${vod}`))).status).to.equal(502);
      const tc = await testConnection(proxy, { url: `${base}/live.ts` });
      expect(tc.success).to.equal(false);
      expect(tc.error).to.match(/SELF_SIGNED|CERT/);
      expect(origin.totalRequests('/live/tls-default.ts')).to.equal(0);
    });

    it('tls_verify:false on the stream (or the test) plays it: live, VOD, /test-connection', async () => {
      const live = await createStream(proxy.base, { url: `${base}/live/tls-off.ts`, tls_verify: false });
      const v = openViewer(proxy.url(`/stream/${live}`));
      try {
        expect(await v.status).to.equal(200);
        await waitFor(() => v.bytes() >= 188 * 100, 15_000, 'live bytes over self-signed TLS');
        expect(v.misaligned()).to.equal(0);
      } finally {
        v.close();
      }
      const vod = await createStream(proxy.base, { url: `${base}/movie.mp4?x=1`, tls_verify: false });
      const res = await httpRequest(proxy.url(`/stream/${vod}`));
      expect(res.status).to.equal(200);
      expect(res.body.length).to.be.greaterThan(1000);
      expect((await testConnection(proxy, { url: `${base}/live.ts`, tls_verify: false })).success).to.equal(true);
    });

    it('UPSTREAM_TLS_VERIFY=false is the same for every stream without its own field', async () => {
      const insecure = await startProxy({ UPSTREAM_TLS_VERIFY: 'false', SHARED_STREAM_GRACE: '0.2' });
      try {
        const id = await createStream(insecure.base, { url: `${base}/live/tls-env.ts` });
        const v = openViewer(insecure.url(`/stream/${id}`));
        expect(await v.status).to.equal(200);
        v.close();
        const strict = await createStream(insecure.base, { url: `${base}/live/tls-env-strict.ts`, tls_verify: true });
        expect((await httpRequest(insecure.url(`/stream/${strict}`))).status).to.equal(502);
      } finally {
        await insecure.close();
      }
    });

    it('FFmpeg honours the same choice: -tls_verify 1 refuses, 0 plays', async () => {
      const profile = '-i {input_url} -c copy {output_args}';
      const strict = await createStream(proxy.base, { url: `${base}/live/tls-ff-strict.ts`, profile }, '/transcode');
      expect((await httpRequest(proxy.url(`/stream/${strict}`))).status).to.equal(502);
      const loose = await createStream(proxy.base, { url: `${base}/live/tls-ff.ts`, profile, tls_verify: false }, '/transcode');
      const v = openViewer(proxy.url(`/stream/${loose}`));
      try {
        expect(await v.status).to.equal(200);
        await waitFor(() => v.bytes() >= 188 * 50, 20_000, 'transcoded bytes over self-signed TLS');
      } finally {
        v.close();
      }
    });
  });
});
