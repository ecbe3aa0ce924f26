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

/** An origin, a redis-server and a black-hole-able TCP proxy in front of it, for two hosts. */
async function startRig(): Promise<{ origin: Origin; redis: RedisServer; proxy: TcpProxy; raw: Redis }> {
  const origin = await startOrigin();
  const redis = await startRedis();
  const proxy = await startTcpProxy(redis.port);
  const raw = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  raw.on('error', () => undefined); // a test restarts the server under it
  return { origin, redis, proxy, raw };
}

async function stopRig(clusters: Array<TestCluster | null | undefined>, rig: { origin?: Origin; redis?: RedisServer; proxy?: TcpProxy; raw?: Redis }): Promise<void> {
  await Promise.all(clusters.map((c) => c?.stop()));
  rig.raw?.disconnect();
  await rig.proxy?.close();
  await rig.redis?.stop();
  await rig.origin?.close();
}

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
    ({ origin, redis, proxy, raw } = await startRig());
    [a, b] = await Promise.all([startCluster(env('hostA', proxy.url('redis')), 60_000), startCluster(env('hostB', redis.url), 60_000)]);
  });
  after(() => stopRig([a, b], { origin, redis, proxy, raw }));

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
    cluster = await startCluster({ WORKERS: '2', SHARED_STREAM_GRACE: '1', LEASE_TTL_MS: String(TTL_MS) }, 60_000);
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

describe('faults: Redis restarted without its data', function () {
  this.timeout(120_000);
  let origin: Origin;
  let redis: RedisServer;
  let proxy: TcpProxy;
  let raw: Redis;
  let a: TestCluster;
  let b: TestCluster;
  let c: TestCluster | null = null;

  // Heartbeats and sweeps far apart: only the reset detection can bring the state back fast.
  const env = (host: string, url: string): Record<string, string> => ({
    WORKERS: '1', WORKER_ID: host, REDIS_ENABLED: 'true', REDIS_URL: url, REDIS_KEY_PREFIX: PREFIX,
    SHARED_STREAM_GRACE: '1', LEASE_TTL_MS: String(TTL_MS), HEARTBEAT_INTERVAL: '30', CLEANUP_INTERVAL: '60',
  });

  before(async () => {
    ({ origin, redis, proxy, raw } = await startRig());
    [a, b] = await Promise.all([startCluster(env('hostA', proxy.url('redis')), 60_000), startCluster(env('hostB', proxy.url('redis')), 60_000)]);
  });
  after(() => stopRig([a, b, c], { origin, redis, proxy, raw }));

  it('every worker publishes its workers, stream, lease, client records and secrets again at once', async () => {
    const path = '/live/restart.ts';
    const created = await a.api<{ stream_id: string }>('/streams', {
      method: 'POST', body: JSON.stringify({ url: origin.url(path), metadata: { id: 'r1' } }),
    });
    const id = created.body.stream_id;
    const viewers = [
      ...Array.from({ length: 2 }, () => openViewer(a.url(`/stream/${id}`))),
      ...Array.from({ length: 2 }, () => openViewer(b.url(`/stream/${id}`))),
    ];
    let onC: TsViewer | null = null;
    try {
      await waitFor(() => viewers.every((v) => v.bytes() > 188 * 200), 20_000, 'every viewer to play');
      // Redis restarts empty while both hosts are cut off; before they are back, a worker
      // started elsewhere has already generated another relay secret.
      proxy.partition();
      await redis.restart();
      await waitFor(async () => (await raw.set(`${PREFIX}relay_secret`, 'a-secret-another-worker-generated-0123456').catch(() => null)) === 'OK',
        5000, 'the new Redis');
      proxy.heal();
      const healedAt = Date.now();
      await waitFor(async () => {
        const [workers, def, clients, lease] = await Promise.all([
          raw.hkeys(`${PREFIX}workers`), raw.hget(`${PREFIX}stream:${id}`, 'definition'),
          raw.keys(`${PREFIX}client:${id}:*`), raw.get(`${PREFIX}lease:${id}:1`),
        ]);
        return workers.length === 2 && def !== null && clients.length === 4 && lease !== null;
      }, 5000, 'workers, stream, clients and lease published again');
      report('state published again after Redis came back empty (ms)', Date.now() - healedAt);
      const listed = await b.api<{ total_clients: number }>('/clients');
      expect(listed.body.total_clients).to.equal(4);
      const active = await b.api<{ total_clients: number }>('/streams/by-metadata?field=id&value=r1&active_only=true');
      expect(active.body.total_clients).to.equal(4);
      await waitFor(async () => (await raw.hget(`${PREFIX}stream:${id}`, 'status')) === 'running', 5000, 'the status again');
      // Everyone adopted the secret the store holds now: a host started now relays at once.
      c = await startCluster(env('hostC', redis.url), 60_000);
      onC = openViewer(c.url(`/stream/${id}`));
      await waitFor(() => onC!.bytes() > 188 * 500, 15_000, 'the new host to relay from the owner');
      expect(await onC.status).to.equal(200);
      const marks = viewers.map((v) => v.bytes());
      await waitFor(() => viewers.every((v, i) => v.bytes() - marks[i]! > 100_000), 15_000, 'media on every viewer');
      for (const v of viewers) expect(v.isClosed()).to.equal(false);
      expect(origin.openConnections(path)).to.equal(1);
    } finally {
      viewers.forEach((v) => v.close());
      onC?.close();
    }
  });

  it('a host that missed the stream_deleted event stops the stream from the registry', async () => {
    const path = '/live/missed-delete.ts';
    const id = await createOn(a, origin.url(path));
    const v = openViewer(b.url(`/stream/${id}`));
    try {
      await v.firstBytes(188 * 100);
      // Deleted behind pub/sub's back, as for a subscriber that was down at that moment.
      await raw.del(`${PREFIX}stream:${id}`);
      const t0 = Date.now();
      await v.closed;
      report('a missed deletion stopped the stream after (ms)', Date.now() - t0);
      await origin.waitForClosedAll(path, 5000);
    } finally {
      v.close();
    }
  });
});

describe('races on one worker', function () {
  this.timeout(60_000);

  it('a player that hangs up while its client record is claimed leaves no source running', async () => {
    const { startWorker } = await import('../src/worker.js');
    const { MemoryCoordinator } = await import('../src/coordination/memory-coordinator.js');
    const { testConfig } = await import('./support/proxy.js');
    const { createLogger } = await import('../src/logger.js');
    const origin = await startOrigin();
    const inner = new MemoryCoordinator();
    // A slow coordinator: the claim takes 300 ms.
    const slow = Object.create(inner) as InstanceType<typeof MemoryCoordinator>;
    slow.putClient = async (...args) => {
      await sleep(300);
      return inner.putClient(...args);
    };
    const worker = await startWorker({
      config: testConfig({ SHARED_STREAM_GRACE: '0.3' }), coordinator: slow, workerId: 'race-1',
      logger: createLogger({ level: 'error', format: 'json', silent: true }),
    });
    try {
      const base = `http://127.0.0.1:${worker.port}`;
      const res = await fetch(`${base}/streams`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ url: origin.url('/slow-headers.ts?ms=10000') }),
      });
      const { stream_id: id } = (await res.json()) as { stream_id: string };
      const v = openViewer(`${base}/stream/${id}`);
      await sleep(100);
      v.close(); // during the claim
      // The upstream answers only after 10 s: the source must stop after the grace (0.3 s),
      // not when its first byte finally wakes a waiter nobody is behind.
      await waitFor(() => origin.totalRequests('/slow-headers.ts') === 1, 3000, 'the source to start');
      await origin.waitForClosedAll('/slow-headers.ts', 3000);
      expect(worker.engine.sessionsOf(id)).to.have.length(0);
    } finally {
      await worker.close();
      await origin.close();
    }
  });
});
