import { expect } from 'chai';
import { readFile } from 'node:fs/promises';
import { httpRequest as get } from './support/http-request.js';
import { makeMp4 } from './support/media.js';
import { startOrigin, type Origin } from './support/origin.js';
import { startProxy, type TestProxy } from './support/proxy.js';

describe('VOD passthrough', function () {
  this.timeout(30_000);
  let origin: Origin;
  let proxy: TestProxy;
  let file: Buffer;
  let id: string;

  before(async () => {
    origin = await startOrigin();
    proxy = await startProxy();
    file = await readFile(await makeMp4());
    id = await create(origin.url('/movie.mp4'));
  });
  after(async () => {
    await proxy.close();
    await origin.close();
  });

  async function create(url: string): Promise<string> {
    const res = await fetch(proxy.url('/streams'), {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ url }),
    });
    return ((await res.json()) as { stream_id: string }).stream_id;
  }

  it('a Range request returns exactly those bytes with 206 and Content-Range', async () => {
    const before = origin.totalRequests('/movie.mp4');
    const res = await get(proxy.url(`/stream/${id}`), { headers: { Range: 'bytes=100-4195' } });
    expect(res.status).to.equal(206);
    expect(res.headers['content-range']).to.equal(`bytes 100-4195/${file.length}`);
    expect(res.headers['content-length']).to.equal('4096');
    expect(res.headers['accept-ranges']).to.equal('bytes');
    expect(res.headers['content-type']).to.equal('video/mp4');
    expect(res.body.equals(file.subarray(100, 4196))).to.equal(true);
    expect(origin.totalRequests('/movie.mp4') - before).to.equal(1);
  });

  it('open-ended and suffix ranges', async () => {
    const tail = await get(proxy.url(`/stream/${id}`), { headers: { Range: `bytes=${file.length - 10}-` } });
    expect(tail.status).to.equal(206);
    expect(tail.body.equals(file.subarray(file.length - 10))).to.equal(true);
    const suffix = await get(proxy.url(`/stream/${id}`), { headers: { Range: 'bytes=-500' } });
    expect(suffix.body.equals(file.subarray(file.length - 500))).to.equal(true);
  });

  it('a full GET returns 200 with Content-Length and the whole file', async () => {
    const res = await get(proxy.url(`/m3u-proxy/stream/${id}`));
    expect(res.status).to.equal(200);
    expect(res.headers['content-length']).to.equal(String(file.length));
    expect(res.body.equals(file)).to.equal(true);
  });

  it('HEAD answers the headers without a body', async () => {
    const res = await get(proxy.url(`/stream/${id}`), { method: 'HEAD', headers: { Range: 'bytes=0-99' } });
    expect(res.status).to.equal(206);
    expect(res.headers['content-range']).to.equal(`bytes 0-99/${file.length}`);
    expect(res.headers['last-modified']).to.be.a('string');
    expect(res.body.length).to.equal(0);
    expect(origin.lastHeaders('/movie.mp4')!.range).to.equal('bytes=0-99');
  });

  it('an unsatisfiable range passes the 416 through', async () => {
    const res = await get(proxy.url(`/stream/${id}`), { headers: { Range: `bytes=${file.length + 10}-` } });
    expect(res.status).to.equal(416);
    expect(res.headers['content-range']).to.equal(`bytes */${file.length}`);
  });

  it('one upstream request per client request, none shared', async () => {
    const before = origin.totalRequests('/movie.mp4');
    await Promise.all(Array.from({ length: 5 }, () => get(proxy.url(`/stream/${id}`))));
    expect(origin.totalRequests('/movie.mp4') - before).to.equal(5);
  });

  it('a body cut mid-way is resumed with a Range and arrives whole', async () => {
    const flaky = await create(`${origin.url('/flaky.mp4')}?drop=50000`);
    const res = await get(proxy.url(`/stream/${flaky}`));
    expect(res.status).to.equal(200);
    expect(res.body.length).to.equal(file.length);
    expect(res.body.equals(file)).to.equal(true);
    expect(origin.totalRequests('/flaky.mp4')).to.equal(Math.ceil(file.length / 50000));
  });

  it('an upstream error before the body → 502 JSON', async () => {
    const missing = await create(origin.url('/movie/1/missing.mkv'));
    const res = await get(proxy.url(`/stream/${missing}`));
    expect(res.status).to.equal(502);
    expect(JSON.parse(res.body.toString())).to.include({ code: 'UPSTREAM_UNAVAILABLE' });
  });

  it('the streams list counts a VOD viewer while its body flows and shows the VOD type', async () => {
    const res = await get(proxy.url(`/streams/${id}`));
    const body = JSON.parse(res.body.toString()) as { stream: { stream_type: string; client_count: number; total_bytes_served: number } };
    expect(body.stream.stream_type).to.equal('VOD');
    expect(body.stream.client_count).to.equal(0);
    expect(body.stream.total_bytes_served).to.be.greaterThan(file.length);
  });
});
