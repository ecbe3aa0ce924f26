// Issue 13, inputs 1 and 4: request-supplied values that cannot go into a header, a log
// field or a Redis key are refused at the edge (422) before anything is touched; a failure
// after a session was touched still lets the session go idle; bad percent-encoding in any
// route parameter is a 400, never a 500.
import { expect } from 'chai';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { httpRequest } from './support/http-request.js';
import { startOrigin, type Origin } from './support/origin.js';
import { startProxy, type TestProxy } from './support/proxy.js';
import { openViewer, sleep, waitFor } from './support/ts-viewer.js';
import { createStream } from './support/create-stream.js';

const GRACE_S = 1;

/** A raw request, so the test can send what Node's client would refuse to build. */
export function rawGet(port: number, target: string, headers: string[] = []): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => {
      sock.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${headers.map((h) => `${h}\r\n`).join('')}\r\n`);
    });
    let text = '';
    sock.on('data', (d: Buffer) => (text += d.toString('latin1')));
    sock.on('error', reject);
    sock.on('close', () => {
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      const type = /\r\ncontent-type: ([^\r;]+)/i.exec(text)?.[1] ?? '';
      resolve({ status, type, body: text.slice(text.indexOf('\r\n\r\n') + 4) });
    });
  });
}

describe('hostile input at the edge (issue 13: client_id, percent-encoding)', function () {
  this.timeout(60_000);
  let origin: Origin;
  let proxy: TestProxy;

  before(async () => {
    origin = await startOrigin();
    proxy = await startProxy({ SHARED_STREAM_GRACE: String(GRACE_S), STREAM_RETRY_ATTEMPTS: '0' });
  });
  after(async () => {
    await proxy.close();
    await origin.close();
  });

  it('refuses a client_id that cannot be a header or a key with 422 JSON, before any upstream request', async () => {
    const path = '/live/client-id.ts';
    const id = await createStream(proxy.base, origin.url(path));
    const bad = ['%0A', '%0D%0ASet-Cookie:%20x=1', 'a%20b', '%00', 'x'.repeat(129), '%E2%98%83', 'a:b', '..%2F..%2Fetc'];
    for (const value of bad) {
      for (const method of ['GET', 'HEAD']) {
        const res = await httpRequest(proxy.url(`/stream/${id}?client_id=${value}`), { method });
        expect(res.status, `${method} client_id=${value}`).to.equal(422);
        expect(res.headers['content-type']).to.match(/^application\/json/);
        expect(res.headers['x-client-id']).to.equal(undefined);
        if (method === 'GET') expect(JSON.parse(res.body.toString()).code).to.equal('VALIDATION_ERROR');
      }
    }
    // The same value on a management route that takes a client id.
    const del = await httpRequest(proxy.url('/streams/by-metadata?field=id&value=1&client_id=%0A'), { method: 'DELETE' });
    expect(del.status).to.equal(422);
    expect(origin.totalRequests(path)).to.equal(0);
    expect(proxy.worker.engine.localClients()).to.have.length(0);
    expect(await proxy.coordinator.listClients()).to.have.length(0);

    // A good one plays and comes back as the header.
    const v = openViewer(proxy.url(`/stream/${id}?client_id=player-1.a_b@home`));
    expect(await v.status).to.equal(200);
    expect((await v.headers)['x-client-id']).to.equal('player-1.a_b@home');
    v.close();
    await origin.waitForClosedAll(path, 10_000);
  });

  it('refuses usernames and user agents with control characters (422), raw on the wire', async () => {
    const path = '/live/username.ts';
    const id = await createStream(proxy.base, origin.url(path));
    for (const target of [`/stream/${id}?username=a%01b`, `/stream/${id}?u=%1B%5B31m`, `/stream/${id}?user=${'x'.repeat(300)}`]) {
      const res = await rawGet(proxy.worker.port, target);
      expect(res.status, target).to.equal(422);
      expect(res.type).to.equal('application/json');
    }
    // Node's parser refuses this header itself; the answer is still JSON.
    const res = await rawGet(proxy.worker.port, `/stream/${id}`, ['X-Username: a\x01b']);
    expect(res.status).to.equal(400);
    expect(res.type).to.equal('application/json');
    expect(JSON.parse(res.body).code).to.equal('BAD_REQUEST');
    const ua = await rawGet(proxy.worker.port, `/stream/${id}`, [`User-Agent: ${'u'.repeat(2000)}`]);
    expect(ua.status).to.equal(422);
    expect(origin.totalRequests(path)).to.equal(0);
  });

  it('a stream id that is not an id is a 422 on every route that takes one', async () => {
    for (const [method, p] of [['GET', '/stream/a%20b'], ['GET', '/streams/a%0Ab'], ['DELETE', '/streams/%3Cx%3E'], ['POST', '/streams/a%20b/failover']] as const) {
      const res = await httpRequest(proxy.url(p), { method });
      expect(res.status, `${method} ${p}`).to.equal(422);
      expect(JSON.parse(res.body.toString()).code).to.equal('VALIDATION_ERROR');
    }
  });

  it('bad percent-encoding in any route parameter is 400 BAD_REQUEST JSON, not 500', async () => {
    const targets: Array<[string, string]> = [
      ['GET', '/streams/%E0%A4%A'], ['GET', '/stream/%E0%A4%A'], ['HEAD', '/stream/%ZZ'],
      ['DELETE', '/streams/%C3%28'], ['POST', '/streams/%E0%A4%A/failover'], ['GET', '/m3u-proxy/streams/%'],
      ['GET', '/m3u-proxy/stream/%FF'],
    ];
    for (const [method, p] of targets) {
      const res = await httpRequest(proxy.url(p), { method });
      expect(res.status, `${method} ${p}`).to.equal(400);
      expect(res.headers['content-type']).to.match(/^application\/json/);
      if (method !== 'HEAD') {
        const body = JSON.parse(res.body.toString()) as { code: string; detail: string };
        expect(body.code).to.equal('BAD_REQUEST');
        expect(body.detail).to.not.match(/at .*\.js:\d+/);
      }
    }
  });

  it('a response that fails after the session was touched still lets the session go idle (no source left running)', async () => {
    const path = '/live/touched.ts';
    const id = await createStream(proxy.base, origin.url(path));
    const def = (await proxy.coordinator.getStream(id))!;
    const { engine } = proxy.worker;
    // The engine is asked to send a head that writeHead refuses (what an unchecked client_id did).
    let failure: unknown = null;
    const server = http.createServer((_req, res) => {
      engine.playLive(def, 'touched', { ip: '127.0.0.1', userAgent: 't', username: null }, res, { 'X-Client-ID': 'a\nb' })
        .catch((err: unknown) => {
          failure = err;
          res.destroy();
        });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as AddressInfo).port;
      await httpRequest(`http://127.0.0.1:${port}/`).catch(() => undefined);
      await waitFor(() => failure !== null, 10_000, 'writeHead to fail');
      expect(String(failure)).to.match(/header|character/i);
      expect(origin.totalRequests(path)).to.equal(1);
      // The source stops after the grace period although no viewer ever attached.
      await origin.waitForClosedAll(path, GRACE_S * 1000 + 5000);
      await waitFor(() => engine.sessionsOf(id).length === 0, 5000, 'the session to close');
    } finally {
      server.close();
    }
  });

  it('nothing above started a source that still runs', async () => {
    await sleep(100);
    expect(proxy.worker.engine.ownedSources()).to.deep.equal([]);
  });
});
