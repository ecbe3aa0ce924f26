// Faults in the coordination (issue 18): a host cut off from Redis, a frozen owner. Each
// test reproduces the fault against real clusters, a real redis-server and the real origin,
// and samples the origin's open upstream connections throughout: never two at once.
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { createOn, startCluster, type TestCluster } from './support/cluster.js';
import { startOrigin, type Origin } from './support/origin.js';
import { startRedis, type RedisServer } from './support/redis-server.js';
import { report } from './support/report.js';
import { gapMeter, sample } from './support/sampler.js';
import { startTcpProxy, type TcpProxy } from './support/tcp-proxy.js';
import { openViewer, sleep, waitFor, type TsViewer } from './support/ts-viewer.js';

const PREFIX = 'f:';
const TTL_MS = 1500;

const workerOf = async (v: TsViewer): Promise<string> => String((await v.headers)['x-worker-id']);

describe('faults: partition from Redis', function () {
  this.timeout(90_000);
  let origin: Origin;
  let redis: RedisServer;
  let proxy: TcpProxy;
  let raw: Redis;
  let a: TestCluster;
  let b: TestCluster;

  const env = (host: string, url: string): Record<string, string> => ({
    WORKERS: '1', WORKER_ID: host, REDIS_ENABLED: 'true', REDIS_URL: url, REDIS_KEY_PREFIX: PREFIX,
    SHARED_STREAM_GRACE: '1', LEASE_TTL_MS: String(TTL_MS),
  });

  before(async () => {
    origin = await startOrigin();
    redis = await startRedis();
    proxy = await startTcpProxy(redis.port);
    raw = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    [a, b] = await Promise.all([startCluster(env('hostA', proxy.url('redis'))), startCluster(env('hostB', redis.url))]);
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    raw?.disconnect();
    await proxy?.close();
    await redis?.stop();
    await origin?.close();
  });

  it('an owner that cannot renew stops its source before its lease expires: never two upstreams', async () => {
    const path = '/live/partition.ts';
    const id = await createOn(a, origin.url(path));
    const onA = openViewer(a.url(`/stream/${id}`));
    let onB: TsViewer | null = null;
    const upstreams = sample(() => origin.openConnections(path));
    try {
      await onA.firstBytes(188 * 200);
      expect((await raw.hgetall(`${PREFIX}stream:${id}`)).owner).to.equal('hostA-1');
      proxy.partition();
      const cutAt = Date.now();
      // A cannot renew: it must give the source up before the lease expires in Redis.
      await origin.waitForClosedAll(path, TTL_MS + 1000);
      report('partitioned owner stopped its upstream after (ms)', Date.now() - cutAt);
      expect(Date.now() - cutAt).to.be.lessThan(TTL_MS + 500);
      // Once the lease expired, a viewer on B makes B the owner.
      await sleep(TTL_MS);
      onB = openViewer(b.url(`/stream/${id}`));
      await onB.firstBytes(188 * 500);
      expect(onA.isClosed(), 'the viewer on the partitioned host stays connected').to.equal(false);
      // The partition heals: A's viewer is fed again (a relay from B), still one upstream.
      const mark = onA.bytes();
      proxy.heal();
      await waitFor(() => onA.bytes() - mark > 200_000, 20_000, 'media again on the healed host');
      expect(onA.isClosed()).to.equal(false);
      expect(onA.misaligned()).to.equal(0);
    } finally {
      expect(upstreams.stop(), 'upstream connections open at the same instant').to.equal(1);
      onA.close();
      onB?.close();
    }
  });
});

describe('faults: frozen owner (SIGSTOP)', function () {
  this.timeout(90_000);
  let origin: Origin;
  let cluster: TestCluster;

  before(async () => {
    origin = await startOrigin();
    cluster = await startCluster({ WORKERS: '2', SHARED_STREAM_GRACE: '1', LEASE_TTL_MS: String(TTL_MS) });
  });
  after(async () => {
    await cluster?.stop();
    await origin?.close();
  });

  it('viewers relaying from a frozen owner get media again from a new owner', async () => {
    const path = '/live/frozen.ts';
    const id = await createOn(cluster, origin.url(path));
    const viewers = Array.from({ length: 6 }, () => openViewer(cluster.url(`/stream/${id}`)));
    let frozen = 0;
    try {
      await waitFor(() => viewers.every((v) => v.bytes() > 188 * 200), 20_000, 'every viewer to play');
      const { body } = await cluster.api<{ stream: { owner: { worker_id: string; pid: number } } }>(`/streams/${id}`);
      const owner = body.stream.owner;
      const survivors: TsViewer[] = [];
      for (const v of viewers) if ((await workerOf(v)) !== owner.worker_id) survivors.push(v);
      expect(survivors.length, 'viewers on the other worker').to.be.greaterThan(0);
      const gaps = survivors.map((v) => gapMeter(() => v.bytes()));
      frozen = owner.pid;
      process.kill(frozen, 'SIGSTOP');
      const stoppedAt = Date.now();
      const marks = survivors.map((v) => v.bytes());
      await waitFor(() => survivors.every((v, i) => v.bytes() - marks[i]! > 200_000), 20_000, 'media from a new owner');
      report('frozen owner: media again on the other worker after (ms)', Date.now() - stoppedAt);
      report('frozen owner: longest media gap (ms)', Math.max(...gaps.map((g) => g.stop())));
      for (const v of survivors) expect(v.isClosed()).to.equal(false);
      // The frozen owner comes back: it finds its lease gone and stops its source.
      process.kill(frozen, 'SIGCONT');
      frozen = 0;
      await origin.waitForOpen(path, 1, 10_000);
      await sleep(1500);
      expect(origin.openConnections(path)).to.equal(1);
    } finally {
      if (frozen) process.kill(frozen, 'SIGCONT');
      viewers.forEach((v) => v.close());
    }
  });
});
