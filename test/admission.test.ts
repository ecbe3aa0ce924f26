// Overload is clean (issue 19): a worker past its capacity refuses NEW viewers with a fast
// 503 JSON + Retry-After, and the viewers already playing keep playing.
import { expect } from 'chai';
import { startOrigin, type Origin } from './support/origin.js';
import { startProxy, type TestProxy } from './support/proxy.js';
import { openViewer, sleep, waitFor, type TsViewer } from './support/ts-viewer.js';

async function createStream(proxy: TestProxy, url: string): Promise<string> {
  const res = await fetch(proxy.url('/streams'), {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ url }),
  });
  expect(res.status).to.equal(200);
  return ((await res.json()) as { stream_id: string }).stream_id;
}

/** One GET of the stream: the status, Retry-After and JSON body of a refusal (the body of a 200 is dropped). */
async function tryJoin(proxy: TestProxy, id: string): Promise<{ status: number; retryAfter: string | null; body: { code?: string; detail?: string } | null }> {
  const ac = new AbortController();
  const res = await fetch(proxy.url(`/stream/${id}`), { signal: ac.signal });
  const out = { status: res.status, retryAfter: res.headers.get('retry-after'), body: res.status === 200 ? null : await res.json() as { code?: string } };
  ac.abort();
  return out;
}

describe('admission control: overload refuses new viewers cleanly', function () {
  this.timeout(90_000);
  let origin: Origin;
  const proxies: TestProxy[] = [];
  const viewers: TsViewer[] = [];

  before(async () => {
    origin = await startOrigin();
  });
  afterEach(async () => {
    viewers.splice(0).forEach((v) => v.close());
    for (const p of proxies.splice(0)) await p.close();
  });
  after(async () => {
    await origin.close();
  });

  it('MAX_VIEWERS_PER_WORKER: the viewer past the cap gets 503 OVERLOADED with Retry-After; the others play on', async () => {
    const proxy = await startProxy({ MAX_VIEWERS_PER_WORKER: '3', SHARED_STREAM_GRACE: '1' });
    proxies.push(proxy);
    const id = await createStream(proxy, origin.url('/live/capped.ts'));
    for (let i = 0; i < 3; i++) viewers.push(openViewer(proxy.url(`/stream/${id}`)));
    expect(await Promise.all(viewers.map((v) => v.status))).to.deep.equal([200, 200, 200]);
    const refused = await tryJoin(proxy, id);
    expect(refused.status).to.equal(503);
    expect(refused.retryAfter).to.equal('5');
    expect(refused.body?.code).to.equal('OVERLOADED');
    expect(refused.body?.detail).to.match(/maximum of 3 viewers/);
    // Those already playing keep receiving.
    const before = viewers.map((v) => v.bytes());
    await waitFor(() => viewers.every((v, i) => v.bytes() > before[i]! + 188 * 50), 15_000, 'the 3 viewers to keep receiving');
    expect(proxy.worker.engine.admission.refused).to.equal(1);
    // One leaves: the next is admitted once the worker has counted the departure.
    viewers.pop()!.close();
    await waitFor(async () => (await tryJoin(proxy, id)).status === 200, 10_000, 'a viewer to be admitted again');
  });

  it('viewers that do not keep up: new viewers are refused while ≥ ADMISSION_LAGGING_SHARE lag, admitted again after', async () => {
    const proxy = await startProxy({ ADMISSION_LAGGING_SHARE: '0.5', VIEWER_STALL_TIMEOUT: '60', VIEWER_MAX_DROPS: '1000', SHARED_STREAM_GRACE: '1' });
    proxies.push(proxy);
    // 8× the source rate, so stalled players' socket buffers fill within seconds.
    const id = await createStream(proxy, `${origin.url('/live/lagging.ts')}?speed=8`);
    const steady = openViewer(proxy.url(`/stream/${id}`));
    viewers.push(steady);
    const stalled = Array.from({ length: 12 }, () => openViewer(proxy.url(`/stream/${id}`)));
    viewers.push(...stalled);
    await Promise.all(stalled.map((v) => v.firstBytes(188)));
    stalled.forEach((v) => v.pause());
    // Once their sockets stop taking bytes the worker counts them as lagging and refuses.
    let refusal: Awaited<ReturnType<typeof tryJoin>> | null = null;
    await waitFor(async () => {
      const r = await tryJoin(proxy, id);
      if (r.status === 503) refusal = r;
      return r.status === 503;
    }, 45_000, 'a new viewer to be refused while 12 of 13 lag');
    expect(refusal!.body?.code).to.equal('OVERLOADED');
    expect(refusal!.body?.detail).to.match(/not keeping up/);
    expect(refusal!.retryAfter).to.equal('5');
    // The steady viewer was never cut and still gets bytes.
    const from = steady.bytes();
    await waitFor(() => steady.bytes() > from + 188 * 100, 10_000, 'the steady viewer to keep receiving');
    // The laggards leave: admission opens again.
    stalled.forEach((v) => v.close());
    await sleep(1500);
    await waitFor(async () => (await tryJoin(proxy, id)).status === 200, 10_000, 'a viewer to be admitted again');
  });
});

describe('admission control: shedding closes the newest viewers (ADMISSION_SHED_SHARE)', function () {
  this.timeout(60_000);

  it('a share of the local viewers is closed, newest first; the older ones play on', async () => {
    const origin = await startOrigin();
    const proxy = await startProxy({ SHARED_STREAM_GRACE: '1' });
    const viewers: TsViewer[] = [];
    try {
      const id = await createStream(proxy, origin.url('/live/shed.ts'));
      // Four viewers, each joining after the previous one plays, so their order is known.
      for (let i = 0; i < 4; i++) {
        const v = openViewer(proxy.url(`/stream/${id}`));
        viewers.push(v);
        await v.firstBytes(188);
        await sleep(20);
      }
      expect(proxy.worker.engine.shedNewest(0.5)).to.equal(2);
      await waitFor(() => viewers[2]!.isClosed() && viewers[3]!.isClosed(), 5_000, 'the two newest to be closed');
      const before = viewers.slice(0, 2).map((v) => v.bytes());
      await waitFor(() => viewers.slice(0, 2).every((v, i) => v.bytes() > before[i]! + 188 * 50), 10_000, 'the two oldest to keep receiving');
      expect(viewers[0]!.isClosed() || viewers[1]!.isClosed()).to.equal(false);
    } finally {
      viewers.forEach((v) => v.close());
      await proxy.close();
      await origin.close();
    }
  });
});
