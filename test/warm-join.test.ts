// Warm join (issue 19, target 3): a viewer joining a channel that already plays on its worker
// gets its first bytes without waiting for the coordinator (the definition is read from the
// worker, the client record is claimed meanwhile). Proved with a frozen coordinator: Redis
// SIGSTOPped, so any round trip before the first byte would hang (and time out as a 503).
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { createOn, startCluster, type TestCluster } from './support/cluster.js';
import { startOrigin, type Origin } from './support/origin.js';
import { startRedis, type RedisServer } from './support/redis-server.js';
import { openViewer, waitFor, type TsViewer } from './support/ts-viewer.js';
import { packetPid } from '../src/streams/mpegts/ts-packets.js';

const PREFIX = 'm3u:';

describe('warm join: no coordinator round trip before the first byte (issue 19)', function () {
  this.timeout(90_000);
  let origin: Origin;
  let redis: RedisServer;
  let raw: Redis;
  let proxy: TestCluster;
  const open: TsViewer[] = [];

  before(async () => {
    origin = await startOrigin();
    redis = await startRedis();
    raw = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    raw.on('error', () => undefined);
    // One worker, as `npm start` on a one-core host: the join lands where the channel plays.
    proxy = await startCluster({
      WORKERS: '1', REDIS_ENABLED: 'true', REDIS_URL: redis.url, REDIS_KEY_PREFIX: PREFIX, SHARED_STREAM_GRACE: '1',
    });
  });
  afterEach(() => {
    redis.resume();
    for (const v of open.splice(0)) v.close();
  });
  after(async () => {
    await proxy?.stop();
    raw?.disconnect();
    await redis?.stop();
    await origin?.close();
  });

  const watch = (url: string): TsViewer => {
    const v = openViewer(url);
    open.push(v);
    return v;
  };

  /** A running channel on the worker: one viewer already playing. */
  const warmStream = async (path: string): Promise<string> => {
    const id = await createOn(proxy, origin.url(path));
    await watch(proxy.url(`/stream/${id}`)).firstBytes(188 * 200);
    return id;
  };

  /** Joins while Redis answers nothing; Redis resumes once the join has its answer (or gave up). */
  const joinFrozen = async (url: string): Promise<{ viewer: TsViewer; status: number; head: Buffer | null }> => {
    redis.pause();
    const viewer = watch(url);
    let status = 0;
    let head: Buffer | null = null;
    try {
      status = await viewer.status;
      if (status === 200) head = await Promise.race([viewer.firstBytes(188 * 8), viewer.closed.then(() => null)]);
    } finally {
      redis.resume();
    }
    return { viewer, status, head };
  };

  it('a join of a running channel gets 200 and TS from a PAT while Redis is frozen; its record is claimed once Redis answers', async () => {
    const id = await warmStream('/live/warm-frozen.ts');
    const { viewer, status, head } = await joinFrozen(proxy.url(`/stream/${id}`));
    // Before: the definition lookup waited for Redis and the join ended as 503 COORDINATOR_UNAVAILABLE.
    expect(status).to.equal(200);
    expect(head, 'first bytes while Redis was frozen').to.not.equal(null);
    expect(head![0]).to.equal(0x47);
    expect(packetPid(head!, 0)).to.equal(0); // a PAT…
    expect(head![1]! & 0x40).to.equal(0x40); // …starting its section
    const clientId = (await viewer.headers)['x-client-id'] as string;
    await waitFor(async () => (await raw.exists(`${PREFIX}client:${id}:${clientId}`)) === 1, 15_000, 'the client record');
    expect(await raw.hget(`${PREFIX}client:${id}:${clientId}`, 'worker_id')).to.match(/-1$/);
    viewer.close();
    await waitFor(async () => (await raw.exists(`${PREFIX}client:${id}:${clientId}`)) === 0, 15_000, 'the record deleted on departure');
    expect(origin.totalRequests('/live/warm-frozen.ts')).to.equal(1);
  });

  it('an id another worker holds: the warm join plays on, its record takes a suffixed id, the other record is untouched', async () => {
    const id = await warmStream('/live/warm-taken.ts');
    // A record of the same id, as a player connected on another host would have.
    const other = `${PREFIX}client:${id}:dup`;
    await raw.hset(other, { client_id: 'dup', stream_id: id, ip_address: '10.0.0.9', user_agent: 'elsewhere', worker_id: 'hostB-1', connected_at: new Date().toISOString() });
    await raw.pexpire(other, 120_000);
    const viewer = watch(proxy.url(`/stream/${id}?client_id=dup`));
    expect(await viewer.status).to.equal(200);
    await viewer.firstBytes(188 * 100);
    expect((await viewer.headers)['x-client-id']).to.equal('dup'); // sent before the claim answered
    let mine: string[] = [];
    await waitFor(async () => {
      mine = (await raw.keys(`${PREFIX}client:${id}:dup_*`));
      return mine.length === 1;
    }, 15_000, 'the record under a suffixed id');
    expect(mine[0]).to.match(/:dup_[0-9a-f]{8}$/);
    expect(await raw.hget(mine[0]!, 'worker_id')).to.match(/-1$/);
    expect(await raw.hget(other, 'worker_id')).to.equal('hostB-1');
    // The player's departure removes its own record, never the other host's.
    viewer.close();
    await waitFor(async () => (await raw.exists(mine[0]!)) === 0, 15_000, 'the suffixed record deleted on departure');
    expect(await raw.hget(other, 'user_agent')).to.equal('elsewhere');
    await raw.del(other);
  });

  it('/metrics shows each stream\'s ring: a few seconds of its bitrate (CHANNEL_BUFFER_SECONDS, default 4), not a fixed byte budget, and the memory behind it', async () => {
    const id = await warmStream('/live/warm-ring.ts');
    const series = async (name: string): Promise<number> => {
      const text = await (await fetch(proxy.url('/metrics'))).text();
      const m = new RegExp(`^m3u_proxy_${name}\\{[^}]*stream_id="${id}"[^}]*\\} ([0-9.e+]+)$`, 'm').exec(text);
      return m ? Number(m[1]) : NaN;
    };
    // The 5 s rate window and the 8 s ring-rate window filled.
    await waitFor(async () => (await series('stream_upstream_bytes_per_second')) > 0, 20_000, 'the upstream rate');
    await new Promise((r) => setTimeout(r, 9000));
    const rate = await series('stream_upstream_bytes_per_second');
    const held = await series('stream_buffer_bytes');
    // About 4 s (a keyframe every second in the test source), far under CHANNEL_BUFFER_BYTES (8 MiB).
    expect(held / rate, `${held} bytes at ${rate} bytes/s`).to.be.within(2.5, 5.5);
    // The memory behind it: the reused blocks (ring-memory.ts), a few blocks more than the bytes held.
    const reserved = await series('stream_buffer_reserved_bytes');
    expect(reserved, `${reserved} reserved for ${held} held`).to.be.within(held * 0.9, held + 3 * 1024 * 1024);
  });

  it('a stream deleted while it plays: the next join answers 404 JSON, not the running channel', async () => {
    const id = await warmStream('/live/warm-deleted.ts');
    const del = await proxy.api(`/streams/${id}`, { method: 'DELETE' });
    expect(del.status).to.equal(200);
    const res = await fetch(proxy.url(`/stream/${id}`));
    expect(res.status).to.equal(404);
    expect(res.headers.get('content-type')).to.match(/application\/json/);
    expect(((await res.json()) as { code: string }).code).to.equal('STREAM_NOT_FOUND');
    await waitFor(() => origin.openConnections('/live/warm-deleted.ts') === 0, 15_000, 'the upstream closed');
  });
});
