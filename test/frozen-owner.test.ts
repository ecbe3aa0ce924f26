// A frozen owner that comes back (issue 18): the owning worker is SIGSTOPped for longer than
// the lease TTL, another worker takes the lease and opens its own upstream, then the frozen
// worker is resumed (SIGCONT). On waking, its event loop serves I/O before timers: it would
// read the upstream bytes queued in its socket (or FFmpeg's pipe) while its lease deadline
// timer is still pending, and forward them beside the new owner's. The lease deadline is
// checked on the source's data path, so the resumed worker drops those bytes and stops the
// source at once; its own viewers stay and are fed by a relay from the new owner.
//
// Proof at the byte level: the origin stamps every write with its connection and the instant
// (stamps.ts). Bytes the origin wrote to the frozen owner's connection after the SIGSTOP were
// never read while the lease was valid; none of them may reach any viewer.
import { expect } from 'chai';
import { performance } from 'node:perf_hooks';
import { startCluster, type TestCluster } from './support/cluster.js';
import { startOrigin, type Origin } from './support/origin.js';
import { startRedis, type RedisServer } from './support/redis-server.js';
import { report } from './support/report.js';
import { sample } from './support/sampler.js';
import { readStamps } from './support/stamps.js';
import { openViewer, sleep, waitFor, type TsViewer } from './support/ts-viewer.js';

const TTL_MS = 1500;
/** Frozen this long: the lease expires, the other worker takes it and plays. */
const FROZEN_MS = 4000;

interface Watched {
  viewer: TsViewer;
  worker: string;
}

describe('faults: a frozen owner resumes (SIGSTOP, then SIGCONT), Redis mode', function () {
  this.timeout(120_000);
  let origin: Origin;
  let redis: RedisServer;
  let cluster: TestCluster;

  before(async () => {
    origin = await startOrigin();
    redis = await startRedis();
    cluster = await startCluster({
      WORKERS: '2', REDIS_ENABLED: 'true', REDIS_URL: redis.url, REDIS_KEY_PREFIX: 'fz:',
      SHARED_STREAM_GRACE: '1', LEASE_TTL_MS: String(TTL_MS),
    }, 90_000);
  });
  after(async () => {
    await cluster?.stop();
    await redis?.stop();
    await origin?.close();
  });

  /** Viewers of `id` until both workers have some (the OS spreads connections). */
  async function watchOnBothWorkers(id: string): Promise<Watched[]> {
    const watched: Watched[] = [];
    for (let i = 0; i < 16 && new Set(watched.map((w) => w.worker)).size < 2; i++) {
      const viewer = openViewer(cluster.url(`/stream/${id}`), { keepBody: true });
      watched.push({ viewer, worker: String((await viewer.headers)['x-worker-id']) });
    }
    expect(new Set(watched.map((w) => w.worker)).size, 'viewers on both workers').to.equal(2);
    await waitFor(() => watched.every((w) => w.viewer.bytes() > 188 * 200), 30_000, 'every viewer to play');
    return watched;
  }

  it('a resumed owner forwards no upstream byte queued while it was frozen, and stops that upstream', async () => {
    const path = '/live/frozen-resume.ts';
    const created = await cluster.api<{ stream_id: string }>('/streams', {
      method: 'POST', body: JSON.stringify({ url: `${origin.url(path)}?stamp=1` }),
    });
    const id = created.body.stream_id;
    const watched = await watchOnBothWorkers(id);
    let frozen = 0;
    try {
      const { body } = await cluster.api<{ stream: { owner: { worker_id: string; pid: number } } }>(`/streams/${id}`);
      const owner = body.stream.owner;
      expect(origin.totalRequests(path), 'one upstream before the fault').to.equal(1);
      const others = watched.filter((w) => w.worker !== owner.worker_id);
      const own = watched.filter((w) => w.worker === owner.worker_id);
      // Upstream connections whose client reads, sampled throughout (origin.ts).
      let stoppedAt = performance.now();
      const timeline: string[] = [];
      const reading = sample(() => {
        const n = origin.consumingConnections(path);
        const line = `${n} of ${origin.openConnections(path)}`;
        if (line !== timeline[timeline.length - 1]?.split(': ')[1]) timeline.push(`${Math.round(performance.now() - stoppedAt)} ms: ${line}`);
        return n;
      }, 10);
      frozen = owner.pid;
      process.kill(frozen, 'SIGSTOP');
      stoppedAt = performance.now();
      const marks = others.map((w) => w.viewer.bytes());
      await waitFor(() => others.every((w, i) => w.viewer.bytes() - marks[i]! > 100_000), 30_000, 'media from a new owner');
      expect(origin.totalRequests(path), 'the new owner opened its own upstream').to.equal(2);
      await sleep(Math.max(0, FROZEN_MS - (performance.now() - stoppedAt)));
      process.kill(frozen, 'SIGCONT');
      frozen = 0;
      const resumedAt = performance.now();
      // The resumed worker finds its lease gone: one upstream left, the new owner's.
      await origin.waitForOpen(path, 1, 10_000);
      await sleep(3000);
      expect(origin.openConnections(path)).to.equal(1);

      expect(reading.stop(), `upstream connections read at the same instant (ms after SIGSTOP: consuming of open) ${timeline.join(', ')}`).to.equal(1);
      // No byte written to the frozen owner's connection after the SIGSTOP reached a viewer.
      let stale = 0;
      for (const w of watched) for (const s of readStamps(w.viewer.body())) if (s.conn === 1 && s.at > stoppedAt + 50) stale++;
      report('frozen owner resumed: stamps of its upstream written while frozen, passed on', stale);
      expect(stale, 'bytes written to the frozen owner\'s upstream while it was stopped, passed on').to.equal(0);
      for (const w of others) expect(w.viewer.isClosed(), 'a viewer on the surviving worker').to.equal(false);
      // The resumed worker's own viewers stay and are fed again, by a relay from the new owner.
      for (const w of own) {
        expect(w.viewer.isClosed(), 'a viewer on the resumed worker').to.equal(false);
        const relayed = readStamps(w.viewer.body()).filter((s) => s.conn === 2 && s.at > resumedAt);
        expect(relayed.length, 'new owner\'s bytes on the resumed worker').to.be.greaterThan(0);
      }
    } finally {
      if (frozen) process.kill(frozen, 'SIGCONT');
      watched.forEach((w) => w.viewer.close());
    }
  });
});
