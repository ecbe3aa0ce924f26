// Leftovers and races of the coordination (issue 18 points 4 and 5): nothing may stay in the
// coordinator once what it describes is gone, and a sweep must never forget a live worker.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { Redis } from 'ioredis';
import { MemoryCoordinator } from '../src/coordination/memory-coordinator.js';
import { Heartbeat } from '../src/coordination/heartbeat.js';
import type { WorkerRecord } from '../src/coordination/coordinator.js';
import { createLogger } from '../src/logger.js';
import { Channel } from '../src/streams/live/channel.js';
import { HttpSource } from '../src/streams/sources/http-source.js';
import type { StreamDefinition } from '../src/streams/stream-definition.js';
import { createOn, startCluster, type TestCluster } from './support/cluster.js';
import { startOrigin, type Origin } from './support/origin.js';
import { startRedis, type RedisServer } from './support/redis-server.js';
import { openViewer, sleep, waitFor } from './support/ts-viewer.js';

const PREFIX = 'lo:';
const COPY = '-i {input_url} -c copy {output_args}';

function ffmpegPids(marker: string): number[] {
  const out = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
  return out.split('\n').filter((l) => /\bffmpeg\b/.test(l) && l.includes(marker)).map((l) => Number(l.trim().split(/\s+/)[0]));
}

describe('leftovers in Redis (pooling off, 2 workers)', function () {
  this.timeout(90_000);
  let origin: Origin;
  let redis: RedisServer;
  let raw: Redis;
  let cluster: TestCluster;

  before(async () => {
    origin = await startOrigin();
    redis = await startRedis();
    raw = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    cluster = await startCluster({
      WORKERS: '2', WORKER_ID: 'hostL', REDIS_ENABLED: 'true', REDIS_URL: redis.url, REDIS_KEY_PREFIX: PREFIX,
      SHARED_STREAM_GRACE: '0.5', LEASE_TTL_MS: '1500', ENABLE_TRANSCODING_POOLING: 'false',
    }, 60_000); // a loaded machine starts workers slowly
  });
  after(async () => {
    await cluster?.stop();
    raw?.disconnect();
    await redis?.stop();
    await origin?.close();
  });

  it('one FFmpeg per viewer leaves no lease key behind, epoch counters included', async () => {
    const res = await cluster.api<{ stream_id: string }>('/transcode', {
      method: 'POST', body: JSON.stringify({ url: origin.url('/live/lo-tx.ts'), profile: COPY }),
    });
    expect(res.status).to.equal(200);
    const viewers = Array.from({ length: 3 }, () => openViewer(cluster.url(`/stream/${res.body.stream_id}`)));
    try {
      await waitFor(() => viewers.every((v) => v.bytes() > 188 * 100), 30_000, 'every viewer to play');
      expect(ffmpegPids('/live/lo-tx.ts')).to.have.length(3);
    } finally {
      viewers.forEach((v) => v.close());
    }
    await waitFor(() => ffmpegPids('/live/lo-tx.ts').length === 0, 15_000, 'every FFmpeg to stop');
    await waitFor(async () => (await raw.keys(`${PREFIX}lease:*`)).length === 0, 5000, 'no lease key left');
  });

  it('a deleted stream leaves no stream:{id} hash (its owner stops without writing a status)', async () => {
    const id = await createOn(cluster, origin.url('/live/lo-delete.ts'));
    const v = openViewer(cluster.url(`/stream/${id}`));
    try {
      await v.firstBytes(188 * 100);
      expect((await cluster.api(`/streams/${id}`, { method: 'DELETE' })).status).to.equal(200);
      await v.closed;
      await origin.waitForClosedAll('/live/lo-delete.ts', 5000);
      await sleep(500);
      expect(await raw.exists(`${PREFIX}stream:${id}`)).to.equal(0);
      expect(await raw.keys(`${PREFIX}lease:${id}:*`)).to.deep.equal([`${PREFIX}lease:${id}:1:epoch`]);
    } finally {
      v.close();
    }
  });

  it('a SIGKILLed owner is no longer reported as the owner', async () => {
    const id = await createOn(cluster, origin.url('/live/lo-kill.ts'));
    const v = openViewer(cluster.url(`/stream/${id}`));
    try {
      await v.firstBytes(188 * 100);
      const before = await cluster.api<{ stream: { owner: { worker_id: string; pid: number } | null } }>(`/streams/${id}`);
      const owner = before.body.stream.owner!;
      expect(owner.worker_id).to.match(/^hostL-[12]$/);
      process.kill(owner.pid, 'SIGKILL');
      await v.closed; // its only viewer was on the dead worker: nobody takes over
      // (a request may meet a pooled connection to the dead worker: asked again)
      const ownerNow = async (): Promise<unknown> =>
        (await cluster.api<{ stream: { owner: unknown } }>(`/streams/${id}`).catch(() => null))?.body.stream?.owner;
      await waitFor(async () => (await ownerNow()) === null, 5000, 'the dead owner to be cleared');
      const hash = await raw.hgetall(`${PREFIX}stream:${id}`);
      expect(hash.owner).to.equal(undefined);
      expect(hash.status).to.equal('stopped');
    } finally {
      v.close();
    }
  });
});

describe('leftovers in the embedded store and in a source', function () {
  this.timeout(90_000); // the origin makes its media with FFmpeg on first use: slow on a loaded box

  it('an ephemeral lease keeps no epoch counter in memory', async () => {
    const c = new MemoryCoordinator();
    for (let i = 0; i < 3; i++) {
      const lease = (await c.acquireLease(`lease:v${i}:1`, 'w-1', 1000, true))!;
      expect(lease.epoch).to.equal(1);
      expect(await c.releaseLease(lease)).to.equal(true);
    }
    expect((c as unknown as { epochs: Map<string, number> }).epochs.size).to.equal(0);
    // Fenced leases still count up.
    const a = (await c.acquireLease('lease:s:1', 'w-1', 1000))!;
    await c.releaseLease(a);
    expect((await c.acquireLease('lease:s:1', 'w-1', 1000))!.epoch).to.equal(a.epoch + 1);
  });

  it('retries leave no abort listener on the source’s long-lived signal (no MaxListenersExceededWarning)', async () => {
    const origin = await startOrigin();
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    try {
      const def = {
        id: 'abort', url: origin.url('/status/503'), kind: 'live', transcode: null, failoverUrls: [], failoverResolverUrl: null,
        userAgent: null, headers: {}, metadata: {}, strictLiveTs: false, useStickySession: false, options: {},
        createdAt: new Date().toISOString(),
      } as unknown as StreamDefinition;
      const channel = new Channel({ maxBytes: 1 << 20, maxAgeMs: 10_000 });
      let failed = false;
      const source = new HttpSource({
        def, channel, logger: createLogger({ level: 'error', format: 'json', silent: true }),
        defaultUserAgent: 'test', connectTimeoutMs: 2000, chunkTimeoutMs: 2000, retryAttempts: 15, retryDelayMs: 1,
        exponentialBackoff: false, totalTimeoutMs: 20_000, maxFailoverAttempts: 0, onFailed: () => void (failed = true),
      });
      source.start();
      await waitFor(() => failed, 15_000, 'the retries to run out');
      expect(origin.totalRequests('/status/503')).to.equal(16);
      await sleep(50);
      expect(warnings.filter((w) => /MaxListeners|memory leak/i.test(w))).to.deep.equal([]);
    } finally {
      process.off('warning', onWarning);
      await origin.close();
    }
  });
});

describe('races', function () {
  this.timeout(30_000);

  it('the sweep never forgets a worker restarted under the same id after the stale record was read', async () => {
    const inner = new MemoryCoordinator();
    const old = new Date(Date.now() - 60_000).toISOString();
    const stale: WorkerRecord = {
      workerId: 'h-1', pid: 111, host: 'h', startedAt: old, lastSeen: old, sources: [], viewers: 0, relay: null,
      relays: { receiving: 0, serving: 0 },
    };
    await inner.putWorker(stale);
    const now = new Date().toISOString();
    // The store as the sweeper sees it: the restarted worker beats and takes a lease right
    // after the sweeper read the list.
    const racing = Object.create(inner) as MemoryCoordinator;
    let restarted = false;
    racing.listWorkers = async () => {
      const list = await inner.listWorkers();
      if (!restarted) {
        restarted = true;
        await inner.putWorker({ ...stale, pid: 222, startedAt: now, lastSeen: now });
        await inner.acquireLease('lease:x:1', 'h-1', 60_000);
      }
      return list;
    };
    const hb = new Heartbeat({ coordinator: racing, record: () => ({ ...stale, workerId: 'sweeper' }), intervalMs: 500, cleanupIntervalMs: 1000 });
    expect(await hb.sweep()).to.deep.equal([]);
    expect((await inner.listWorkers()).map((w) => w.pid)).to.deep.equal([222]);
    expect(await inner.leaseHolder('lease:x:1')).to.match(/^h-1:/);
  });
});

describe('DELETE /streams/by-metadata force=false: check and delete in one step', function () {
  this.timeout(30_000);

  it('the coordinator refuses to delete a stream that has a viewer, atomically (memory and Redis)', async () => {
    const { RedisCoordinator } = await import('../src/coordination/redis-coordinator.js');
    const redis = await startRedis();
    const backends = [new MemoryCoordinator(), new RedisCoordinator({ url: redis.url, keyPrefix: 'atomic:' })];
    try {
      for (const c of backends) {
        const now = new Date().toISOString();
        const def = {
          id: 's1', url: 'http://example.invalid/a.ts', kind: 'live', transcode: null, failoverUrls: [], failoverResolverUrl: null,
          userAgent: null, headers: {}, metadata: { id: '7' }, strictLiveTs: false, useStickySession: false, options: {}, createdAt: now,
        } as unknown as StreamDefinition;
        await c.putStream(def);
        const client = {
          clientId: 'c1', streamId: 's1', ipAddress: '127.0.0.1', userAgent: 'x', username: null, workerId: 'w-1',
          connectedAt: now, lastAccess: now, bytesServed: 0, segmentsServed: 0,
        };
        await c.putClient(client, 60_000);
        expect(await c.deleteStreamIfIdle('s1'), c.backend).to.equal('busy');
        expect(await c.getStream('s1')).to.not.equal(null);
        // The caller's own viewer does not count.
        await c.putClient({ ...client, clientId: 'mine' }, 60_000);
        expect(await c.deleteStreamIfIdle('s1', 'mine'), c.backend).to.equal('busy');
        await c.deleteClient('s1', 'c1');
        expect(await c.deleteStreamIfIdle('s1', 'mine'), c.backend).to.equal('deleted');
        expect(await c.getStream('s1')).to.equal(null);
        expect(await c.deleteStreamIfIdle('s1'), c.backend).to.equal('absent');
      }
    } finally {
      await Promise.all(backends.map((c) => c.close()));
      await redis.stop();
    }
  });
});
