// Issue 13, input 8: a channel switch on a provider that allows one connection. Plex opens the
// next channel before it closes the last; the old channel's source, in its grace period with
// no viewer, must not make the provider refuse the new one.
import { expect } from 'chai';
import { startOrigin, type Origin } from './support/origin.js';
import { startProxy, type TestProxy } from './support/proxy.js';
import { openViewer, sleep, waitFor } from './support/ts-viewer.js';
import { createStream } from './support/create-stream.js';

const GRACE_S = 8; // longer than all retries of the new channel together

describe('channel switch on a one-connection provider (issue 13: input 8)', function () {
  this.timeout(60_000);
  let origin: Origin;
  let proxy: TestProxy;

  before(async () => {
    origin = await startOrigin();
    proxy = await startProxy({ SHARED_STREAM_GRACE: String(GRACE_S), STREAM_RETRY_ATTEMPTS: '2', STREAM_RETRY_DELAY: '1' });
  });
  after(async () => {
    await proxy.close();
    await origin.close();
  });

  it('Plex order: the new channel is requested, the old viewer leaves 100 ms later → the new one plays', async () => {
    const [one, two] = ['/single/plex-1.ts', '/single/plex-2.ts'];
    const a = openViewer(proxy.url(`/stream/${await createStream(proxy.base, origin.url(one))}`));
    expect(await a.status).to.equal(200);
    await waitFor(() => a.bytes() > 188 * 50, 10_000, 'the first channel');
    const idTwo = await createStream(proxy.base, origin.url(two));
    const b = openViewer(proxy.url(`/stream/${idTwo}`));
    await sleep(100);
    a.close();
    try {
      // Without the fix the old source holds the one connection for GRACE_S (8 s) while the
      // new one gives up after its retries (~2 s): a 502.
      expect(await b.status).to.equal(200);
      await waitFor(() => b.bytes() > 188 * 50, 10_000, 'the second channel');
      expect(origin.openConnections(one)).to.equal(0);
      expect(origin.totalRequests(one)).to.equal(1);
      expect(proxy.worker.engine.sessionsOf(idTwo)).to.have.length(1);
    } finally {
      b.close();
    }
    await origin.waitForClosedAll(two, GRACE_S * 1000 + 5000);
  });

  it('old viewer gone first (its source in grace) → the new channel starts on its second request', async () => {
    const [one, two] = ['/single/zap-1.ts', '/single/zap-2.ts'];
    const idOne = await createStream(proxy.base, origin.url(one));
    const a = openViewer(proxy.url(`/stream/${idOne}`));
    expect(await a.status).to.equal(200);
    a.close();
    await waitFor(() => proxy.worker.engine.sessionsOf(idOne)[0]?.isIdle === true, 5000, 'the old source to be idle');
    const b = openViewer(proxy.url(`/stream/${await createStream(proxy.base, origin.url(two))}`));
    try {
      expect(await b.status).to.equal(200);
      // One refusal, then the idle source is stopped and the retry goes through at once.
      expect(origin.totalRequests(two)).to.equal(2);
      expect(origin.openConnections(one)).to.equal(0);
      expect(proxy.worker.engine.sessionsOf(idOne)).to.have.length(0);
    } finally {
      b.close();
    }
  });

  it('a refusal with no idle source of ours to that host changes nothing (a viewer is still watching)', async () => {
    const [one, two] = ['/single/busy-1.ts', '/single/busy-2.ts'];
    const a = openViewer(proxy.url(`/stream/${await createStream(proxy.base, origin.url(one))}`));
    try {
      expect(await a.status).to.equal(200);
      const b = openViewer(proxy.url(`/stream/${await createStream(proxy.base, origin.url(two))}`));
      expect(await b.status).to.equal(502); // retries exhausted: the provider's limit is real
      expect(a.isClosed()).to.equal(false);
      expect(origin.openConnections(one)).to.equal(1);
    } finally {
      a.close();
    }
  });
});
