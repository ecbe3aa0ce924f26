// Self-test of the local test origin: if these fail, proxy test failures mean nothing.
import { expect } from 'chai';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { sleep } from './support/ts-viewer.js';
import { makeLiveTs, tsByteRate } from './support/media.js';
import { httpRequest as request } from './support/http-request.js';
import { startOrigin, type Origin } from './support/origin.js';

/** Starts a GET and resolves once the response headers arrive. */
function open(url: string): Promise<{ req: http.ClientRequest; res: http.IncomingMessage }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => resolve({ req, res }));
    req.on('error', reject);
  });
}


describe('test origin', () => {
  let origin: Origin;
  let byteRate: number;

  before(async function () {
    this.timeout(60_000);
    origin = await startOrigin();
    byteRate = await tsByteRate(await makeLiveTs());
  });

  after(async () => {
    await origin?.close();
  });

  it('streams live.ts 188-aligned from a sync byte at its real byte rate', async function () {
    this.timeout(10_000);
    const { req, res } = await open(origin.url('/live.ts?x=1'));
    expect(res.statusCode).to.equal(200);
    expect(res.headers['content-type']).to.equal('video/mp2t');

    const chunks: Buffer[] = [];
    let received = 0;
    let firstAt = 0;
    let atWindowStart = 0;
    res.on('data', (c: Buffer) => {
      if (received === 0) firstAt = performance.now();
      chunks.push(c);
      received += c.length;
    });
    // Measure over a 2 s window that starts after the first byte, so setup latency is excluded.
    while (received === 0) await sleep(5);
    atWindowStart = received;
    const windowStart = performance.now();
    await sleep(2000);
    const measured = ((received - atWindowStart) * 1000) / (performance.now() - windowStart);
    req.destroy();

    expect(firstAt).to.be.greaterThan(0);
    const data = Buffer.concat(chunks);
    expect(data[0]).to.equal(0x47);
    const checked = Math.min(data.length, 100 * 1024);
    expect(checked).to.be.greaterThan(50 * 1024);
    for (let i = 0; i < checked; i += 188) {
      if (data[i] !== 0x47) expect.fail(`no sync byte at offset ${i}`);
    }
    expect(measured).to.be.within(byteRate * 0.75, byteRate * 1.25);
    await origin.waitForClosedAll('/live.ts', 2000);
  });

  it('counts open connections per path until the client aborts', async () => {
    const before = origin.totalRequests('/live/a.ts');
    const { req } = await open(origin.url('/live/a.ts'));
    await origin.waitForOpen('/live/a.ts', 1, 2000);
    expect(origin.openConnections('/live/a.ts')).to.equal(1);
    expect(origin.openConnections('/live/b.ts')).to.equal(0);
    expect(origin.totalRequests('/live/a.ts')).to.equal(before + 1);
    req.destroy();
    const ms = await origin.waitForClosedAll('/live/a.ts', 2000);
    expect(ms).to.be.below(2000);
    expect(origin.openConnections('/live/a.ts')).to.equal(0);
  });

  it('rejects waitForOpen with a clear error on timeout', async () => {
    let error: unknown;
    try {
      await origin.waitForOpen('/never.ts', 1, 100);
    } catch (err) {
      error = err;
    }
    expect(error).to.be.instanceOf(Error);
    expect((error as Error).message).to.match(/timed out after 100 ms.*\/never\.ts/);
  });

  it('records the last request headers', async () => {
    await request(origin.url('/status/204?q=1'), { headers: { 'User-Agent': 'ua-test/1', 'X-Custom': 'abc' } });
    const h = origin.lastHeaders('/status/204');
    expect(h?.['user-agent']).to.equal('ua-test/1');
    expect(h?.['x-custom']).to.equal('abc');
  });

  it('serves mp4 byte ranges with 206 and Content-Range', async () => {
    const full = await request(origin.url('/movie.mp4'));
    expect(full.status).to.equal(200);
    expect(full.headers['accept-ranges']).to.equal('bytes');
    expect(full.headers['content-type']).to.equal('video/mp4');
    expect(full.headers['last-modified']).to.be.a('string');
    const size = full.body.length;
    expect(Number(full.headers['content-length'])).to.equal(size);

    const part = await request(origin.url('/movie.mp4'), { headers: { Range: 'bytes=100-1099' } });
    expect(part.status).to.equal(206);
    expect(part.headers['content-range']).to.equal(`bytes 100-1099/${size}`);
    expect(part.body.equals(full.body.subarray(100, 1100))).to.equal(true);

    const open = await request(origin.url('/movie.mp4'), { headers: { Range: `bytes=${size - 10}-` } });
    expect(open.status).to.equal(206);
    expect(open.body.equals(full.body.subarray(size - 10))).to.equal(true);

    const suffix = await request(origin.url('/movie.mp4'), { headers: { Range: 'bytes=-500' } });
    expect(suffix.status).to.equal(206);
    expect(suffix.headers['content-range']).to.equal(`bytes ${size - 500}-${size - 1}/${size}`);
    expect(suffix.body.equals(full.body.subarray(size - 500))).to.equal(true);

    const bad = await request(origin.url('/movie.mp4'), { headers: { Range: `bytes=${size}-` } });
    expect(bad.status).to.equal(416);
    expect(bad.headers['content-range']).to.equal(`bytes */${size}`);
  });

  it('answers HEAD on the mp4 with headers and no body', async () => {
    const res = await request(origin.url('/movie.mp4'), { method: 'HEAD' });
    expect(res.status).to.equal(200);
    expect(Number(res.headers['content-length'])).to.be.greaterThan(0);
    expect(res.headers['accept-ranges']).to.equal('bytes');
    expect(res.body.length).to.equal(0);
  });

  it('stall.ts sends headers and then nothing', async () => {
    const { req, res } = await open(origin.url('/stall.ts'));
    expect(res.statusCode).to.equal(200);
    expect(res.headers['content-type']).to.equal('video/mp2t');
    let bytes = 0;
    res.on('data', (c: Buffer) => (bytes += c.length));
    await sleep(500);
    expect(bytes).to.equal(0);
    expect(origin.openConnections('/stall.ts')).to.equal(1);
    req.destroy();
    await origin.waitForClosedAll('/stall.ts', 2000);
  });

  it('close-after sends exactly N bytes then ends', async () => {
    const res = await request(origin.url('/close-after?bytes=10000'));
    expect(res.status).to.equal(200);
    expect(res.body.length).to.equal(10_000);
    expect(res.body[0]).to.equal(0x47);
    const dflt = await request(origin.url('/close-after.ts'));
    expect(dflt.body.length).to.equal(188 * 100);
    await origin.waitForClosedAll('/close-after', 1000);
  });

  it('redirects, serves a playlist, custom statuses and 404', async () => {
    const redirect = await request(origin.url('/redirect?to=/live.ts'));
    expect(redirect.status).to.equal(302);
    expect(redirect.headers.location).to.equal('/live.ts');

    const playlist = await request(origin.url('/playlist.m3u8'));
    expect(playlist.headers['content-type']).to.equal('application/vnd.apple.mpegurl');
    expect(playlist.body.toString()).to.match(/^#EXTM3U/);

    const status = await request(origin.url('/status/503'));
    expect(status.status).to.equal(503);

    const missing = await request(origin.url('/notfound.ts'));
    expect(missing.status).to.equal(404);
    expect(missing.body.length).to.be.greaterThan(0);
  });

  it('slow-headers.ts delays the headers, then streams', async () => {
    const started = performance.now();
    const { req, res } = await open(origin.url('/slow-headers.ts?ms=300'));
    expect(performance.now() - started).to.be.at.least(280);
    const first = await new Promise<Buffer>((resolve) => res.once('data', resolve));
    expect(first[0]).to.equal(0x47);
    req.destroy();
    await origin.waitForClosedAll('/slow-headers.ts', 2000);
  });
});
