import { expect } from 'chai';
import { Redis } from 'ioredis';
import { createOn, startCluster, type TestCluster } from './support/cluster.js';
import { startOrigin, type Origin } from './support/origin.js';
import { startRedis, type RedisServer } from './support/redis-server.js';
import { report } from './support/report.js';
import { openViewer, sleep, waitFor, type TsViewer } from './support/ts-viewer.js';

const PREFIX = 'm3u:';

describe('cluster with Redis: several hosts', function () {
  this.timeout(120_000);
  let origin: Origin;
  let redis: RedisServer;
  let raw: Redis;
  let a: TestCluster;
  let b: TestCluster;

  const env = (host: string): Record<string, string> => ({
    WORKERS: '2',
    WORKER_ID: host,
    REDIS_ENABLED: 'true',
    REDIS_URL: redis.url,
    REDIS_KEY_PREFIX: PREFIX,
    SHARED_STREAM_GRACE: '1',
    LEASE_TTL_MS: '1500',
  });

  before(async () => {
    origin = await startOrigin();
    redis = await startRedis();
    raw = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    raw.on('error', () => undefined); // the outage test kills the server under it
    [a, b] = await Promise.all([startCluster(env('hostA')), startCluster(env('hostB'))]);
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    raw.disconnect();
    await redis.stop();
    await origin.close();
  });

  it('two clusters on different ports sharing one Redis: 1 upstream for viewers of both', async () => {
    const path = '/live/twohosts.ts';
    const id = await createOn(a, origin.url(path));
    // The definition made on host A plays by id on host B.
    const viewers = [
      ...Array.from({ length: 6 }, () => openViewer(a.url(`/stream/${id}`))),
      ...Array.from({ length: 6 }, () => openViewer(b.url(`/stream/${id}`))),
    ];
    try {
      await waitFor(() => viewers.every((v) => v.bytes() > 188 * 300), 20_000, 'every viewer to play');
      expect(origin.totalRequests(path)).to.equal(1);
      for (const v of viewers) expect(v.misaligned()).to.equal(0);

      // The seed's keys, live in Redis.
      const stream = await raw.hgetall(`${PREFIX}stream:${id}`);
      expect(stream.status).to.equal('running');
      expect(stream.owner).to.match(/^host[AB]-[12]$/);
      expect(stream.url).to.equal(origin.url(path));
      const workers = await raw.hgetall(`${PREFIX}workers`);
      expect(Object.keys(workers).sort()).to.deep.equal(['hostA-1', 'hostA-2', 'hostB-1', 'hostB-2']);
      const clientKeys = await raw.keys(`${PREFIX}client:${id}:*`);
      expect(clientKeys).to.have.length(12);
      expect(await raw.pttl(clientKeys[0]!)).to.be.greaterThan(0);
      expect(await raw.get(`${PREFIX}lease:${id}:1`)).to.match(new RegExp(`^${stream.owner}:`));
      const entry = await b.api<{ stream: { client_count: number } }>(`/streams/${id}`);
      expect(entry.body.stream.client_count).to.equal(12);
    } finally {
      viewers.forEach((v) => v.close());
    }
  });

  it('SIGKILL of the owner on one host: the other host takes over, viewers keep playing', async () => {
    const path = '/live/crosshost.ts';
    const id = await createOn(a, origin.url(path));
    const viewers = [
      ...Array.from({ length: 4 }, () => openViewer(a.url(`/stream/${id}`))),
      ...Array.from({ length: 4 }, () => openViewer(b.url(`/stream/${id}`))),
    ];
    try {
      await waitFor(() => viewers.every((v) => v.bytes() > 188 * 300), 20_000, 'every viewer to play');
      const owner = await raw.hgetall(`${PREFIX}stream:${id}`);
      const survivors: TsViewer[] = [];
      for (const v of viewers) if ((await v.headers)['x-worker-id'] !== owner.owner) survivors.push(v);
      const killedAt = Date.now();
      process.kill(Number(owner.pid), 'SIGKILL');
      await waitFor(() => origin.totalRequests(path) >= 2, 15_000, 'a new owner');
      report('cross-host takeover after SIGKILL, to new upstream connection (ms)', Date.now() - killedAt);
      const marks = survivors.map((v) => v.bytes());
      await waitFor(() => survivors.every((v, i) => v.bytes() - marks[i]! > 100_000), 20_000, 'media after takeover');
      for (const v of survivors) expect(v.isClosed()).to.equal(false);
      await waitFor(async () => {
        const now = await raw.hgetall(`${PREFIX}stream:${id}`);
        return now.status === 'running' && now.owner !== owner.owner;
      }, 5000, 'the new owner in stream:{id}');
    } finally {
      viewers.forEach((v) => v.close());
    }
  });

  it('a stale worker is swept: record, leases and viewers gone', async () => {
    const old = new Date(Date.now() - 60_000).toISOString();
    await raw.hset(`${PREFIX}workers`, 'ghost-1', JSON.stringify({
      worker_id: 'ghost-1', pid: 1, host: 'ghost', started_at: old, last_seen: old, sources: ['x:1'], viewers: 1, relay: null,
      relays: { receiving: 0, serving: 0 },
    }));
    await raw.set(`${PREFIX}lease:ghoststream:1`, 'ghost-1:abc', 'PX', 600_000);
    await raw.hset(`${PREFIX}client:ghoststream:c1`, {
      client_id: 'c1', stream_id: 'ghoststream', ip_address: '1.2.3.4', user_agent: 'x', worker_id: 'ghost-1', connected_at: old,
    });
    await raw.pexpire(`${PREFIX}client:ghoststream:c1`, 600_000);
    await waitFor(async () => (await raw.hexists(`${PREFIX}workers`, 'ghost-1')) === 0, 10_000, 'the sweep');
    expect(await raw.get(`${PREFIX}lease:ghoststream:1`)).to.equal(null);
    expect(await raw.exists(`${PREFIX}client:ghoststream:c1`)).to.equal(0);
  });

  it('Redis outage: viewers stay connected, new requests get 503, service recovers by itself', async () => {
    const path = '/live/outage.ts';
    const id = await createOn(a, origin.url(path));
    const v = openViewer(a.url(`/stream/${id}`));
    try {
      await v.firstBytes(188 * 100);
      redis.kill();
      await sleep(300);
      const down = await a.api<{ code: string }>('/streams', { method: 'POST', body: JSON.stringify({ url: origin.url('/live/new.ts') }) });
      expect(down.status).to.equal(503);
      expect(down.body.code).to.equal('COORDINATOR_UNAVAILABLE');
      const health = await a.api<{ status: string; coordinator: { ok: boolean } }>('/health');
      expect(health.status).to.equal(503);
      expect(health.body.coordinator.ok).to.equal(false);
      // The owner cannot renew its lease: it stops its source before the TTL could let
      // another host take it (issue 18); its viewer stays connected on null packets.
      await origin.waitForClosedAll(path, 3000);
      await sleep(1500);
      expect(v.isClosed()).to.equal(false);
      await redis.restart();
      const t0 = Date.now();
      await waitFor(async () => {
        const r = await a.api('/streams', { method: 'POST', body: JSON.stringify({ url: origin.url('/live/after.ts') }) }).catch(() => null);
        return r?.status === 200;
      }, 20_000, 'the service to recover');
      report('recovery after Redis returned (ms)', Date.now() - t0);
      const mark2 = v.bytes();
      await sleep(1000);
      expect(v.bytes() - mark2).to.be.greaterThan(50_000);
      expect(origin.openConnections(path)).to.equal(1);
    } finally {
      v.close();
    }
  });
});
