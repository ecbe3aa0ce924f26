import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { CoordinatorUnavailableError } from '../src/coordination/coordinator.js';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { IpcCoordinator } from '../src/coordination/ipc-coordinator.js';
import { MemoryCoordinator } from '../src/coordination/memory-coordinator.js';
import {
  RedisCoordinator,
  type RedisCoordinatorOptions,
} from '../src/coordination/redis-coordinator.js';
import {
  clientRec,
  contract,
  nextEvent,
  sleep,
  statusRec,
  streamDef,
  workerRec,
} from './support/coordinator-contract.js';
import { startRedis, type RedisServer } from './support/redis-server.js';

const randomPrefix = (): string => `t${randomBytes(4).toString('hex')}:`;

contract('memory', async () => {
  const c = new MemoryCoordinator();
  return { c, cleanup: () => c.close() };
});

// The embedded backend for real: a child process plays the primary over the IPC channel,
// and two IpcCoordinators (two workers) talk to it.
contract('embedded', async () => {
  const host = fork(fileURLToPath(new URL('./support/ipc-host-child.js', import.meta.url)), { stdio: 'ignore' });
  const c = new IpcCoordinator(host);
  const c2 = new IpcCoordinator(host);
  return {
    c, c2,
    cleanup: async () => {
      await Promise.all([c.close(), c2.close()]);
      const exited = new Promise((r) => host.once('exit', r));
      host.disconnect();
      await exited;
    },
  };
});

let shared: RedisServer | undefined;
contract(
  'redis',
  async () => {
    // Two instances (two workers) on one server; a fresh prefix isolates each test.
    const keyPrefix = randomPrefix();
    const c = new RedisCoordinator({ url: shared!.url, keyPrefix });
    const c2 = new RedisCoordinator({ url: shared!.url, keyPrefix });
    await Promise.all([c.ready(), c2.ready()]);
    return { c, c2, cleanup: async () => void (await Promise.all([c.close(), c2.close()])) };
  },
  {
    before: async () => {
      shared = await startRedis();
    },
    after: async () => {
      await shared?.stop();
    },
  },
);

interface Logged {
  msg: string;
  meta?: object;
}

/** Resolves with how long the call took to reject with CoordinatorUnavailableError. */
async function unavailableWithin(call: () => Promise<unknown>): Promise<number> {
  const t0 = Date.now();
  try {
    await call();
  } catch (err) {
    expect(err, String(err)).to.be.instanceOf(CoordinatorUnavailableError);
    return Date.now() - t0;
  }
  expect.fail('expected a CoordinatorUnavailableError');
}

async function eventually(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(100);
  }
  expect.fail(`not within ${ms} ms: ${what}`);
}

describe('coordinator contract: redis keys, auth and outages', function () {
  let server: RedisServer;
  const open: (RedisCoordinator | Redis)[] = [];

  function coordinator(opts: Partial<RedisCoordinatorOptions> = {}): RedisCoordinator {
    const c = new RedisCoordinator({ url: server.url, ...opts });
    open.push(c);
    return c;
  }
  function raw(url = server.url): Redis {
    const r = new Redis(url, { lazyConnect: false });
    open.push(r);
    return r;
  }

  before(async () => {
    server = await startRedis();
  });
  after(async () => {
    await server.stop();
  });
  afterEach(async () => {
    for (const x of open.splice(0)) {
      if (x instanceof RedisCoordinator) await x.close();
      else x.disconnect();
    }
  });

  it('stores the documented keys', async () => {
    const P = randomPrefix();
    const c = coordinator({ keyPrefix: P });
    await c.ready();
    const r = raw();

    const def = await c.putStream(streamDef('s1', { metadata: { channel: 'one' } }));
    await c.setStreamStatus('s1', statusRec(3, { owner: 'w-1', pid: 123 }));
    await c.putClient(clientRec('s1', 'c1', { username: 'bob' }), 10_000);
    await c.putClient(clientRec('s1', 'c2'), 10_000);
    await c.putWorker(workerRec('w-1'));
    const lease = await c.acquireLease('lease:abc:1', 'w-1', 5000);
    const secret = await c.getOrSetValue('url_secret', () => 'shh');

    const stream = await r.hgetall(`${P}stream:s1`);
    expect(stream).to.include({
      url: def.url,
      kind: 'live',
      status: 'running',
      owner: 'w-1',
      pid: '123',
      epoch: '3',
      client_count: '2',
      created_at: def.createdAt,
    });
    expect(JSON.parse(stream.definition ?? 'null')).to.deep.equal(def);

    const client = await r.hgetall(`${P}client:s1:c1`);
    expect(client).to.include({
      client_id: 'c1',
      stream_id: 's1',
      ip_address: '10.0.0.7',
      user_agent: 'VLC/3.0',
      username: 'bob',
      worker_id: 'w-1',
      connected_at: '2024-01-01T00:00:00.000Z',
    });
    const clientTtl = await r.pttl(`${P}client:s1:c1`);
    expect(clientTtl).to.be.greaterThan(0).and.at.most(10_000);

    expect(JSON.parse((await r.hget(`${P}workers`, 'w-1')) ?? 'null')).to.deep.equal({
      worker_id: 'w-1',
      pid: 4242,
      host: 'node-a',
      started_at: '2024-01-01T00:00:00.000Z',
      last_seen: '2024-01-01T00:00:10.000Z',
      sources: ['live:abc:0'],
      viewers: 2,
      relay: '10.0.0.1:9000',
      relays: { receiving: 1, serving: 0 },
    });

    expect(await r.get(`${P}lease:abc:1`)).to.equal(lease!.token);
    expect(await r.get(`${P}lease:abc:1:epoch`)).to.equal('1');
    expect(await r.pttl(`${P}lease:abc:1`)).to.be.greaterThan(0).and.at.most(5000);
    expect(await r.get(`${P}url_secret`)).to.equal(secret);

    // client_count follows deletes, and a listing corrects what expiry left behind.
    await c.deleteClient('s1', 'c1');
    expect(await r.hget(`${P}stream:s1`, 'client_count')).to.equal('1');
    await r.del(`${P}client:s1:c2`); // as if it expired
    expect(await c.listClients('s1')).to.deep.equal([]);
    expect(await r.hget(`${P}stream:s1`, 'client_count')).to.equal('0');

    // Events are JSON on `${P}events`.
    const listener = raw();
    await listener.subscribe(`${P}events`);
    const message = new Promise<string>((resolve) => listener.once('message', (_ch, m: string) => resolve(m)));
    await c.publish({ type: 'stream:stopped', streamId: 's1' });
    expect(JSON.parse(await message)).to.deep.equal({ type: 'stream:stopped', streamId: 's1' });
  });

  it('fails fast while Redis is down and recovers by itself', async function () {
    this.timeout(20_000);
    const keyPrefix = randomPrefix();
    const logged: Logged[] = [];
    const c = coordinator({ keyPrefix, logger: { warn: (msg, meta) => logged.push({ msg, meta }) } });
    const c2 = coordinator({ keyPrefix });
    await Promise.all([c.ready(), c2.ready()]);
    await c.putStream(streamDef('s1'));

    server.kill();
    // Right after the kill (the socket may not have noticed yet) and a moment later.
    for (const wait of [0, 300]) {
      await sleep(wait);
      const took = await Promise.all([
        unavailableWithin(() => c.getStream('s1')),
        unavailableWithin(() => c.acquireLease('lease:x:0', 'w-1', 1000)),
        unavailableWithin(() => c.putClient(clientRec('s1', 'c1'), 1000)),
        unavailableWithin(() => c.listStreams()),
        unavailableWithin(() => c2.publish({ type: 'test:lost' })),
      ]);
      expect(Math.max(...took)).to.be.lessThan(2000);
    }
    const t0 = Date.now();
    expect(await c.ping()).to.equal(false);
    expect(Date.now() - t0).to.be.lessThan(2000);
    expect(logged.filter((l) => /unreachable/.test(l.msg))).to.have.length(1); // once per outage

    await server.restart();
    await eventually(() => c.ping(), 8000, 'c reconnects');
    await eventually(() => c2.ping(), 8000, 'c2 reconnects');
    expect(await c.putStream(streamDef('s2'))).to.deep.include({ id: 's2' });
    expect((await c2.getStream('s2'))?.id).to.equal('s2');
    // The restarted server has no scripts cached: they are sent again, pipelined ones too.
    await c.acquireLease('lease:x:0', 'w-1', 5000);
    expect(await c2.releaseLeasesHeldBy('w-1')).to.equal(1);
    await c.putClient(clientRec('s2', 'c1'), 5000);
    expect(await c2.listClients('s2')).to.have.length(1);

    // The events channel is re-subscribed by itself (ioredis autoResubscribe).
    let received = false;
    const off = c2.subscribe((e) => {
      if (e.type === 'test:back') received = true;
    });
    await eventually(
      async () => {
        await c.publish({ type: 'test:back' });
        await sleep(50);
        return received;
      },
      8000,
      'events reach c2 after the restart',
    );
    off();
  });

  describe('with requirepass', () => {
    const password = `pw-${randomBytes(6).toString('hex')}`;
    let secured: RedisServer;
    before(async () => {
      secured = await startRedis({ args: ['--requirepass', password] });
    });
    after(async () => {
      await secured.stop();
    });

    it('falls back to fallbackPassword (API_TOKEN) when Redis answers NOAUTH', async () => {
      const logged: Logged[] = [];
      const keyPrefix = randomPrefix();
      const logger = { warn: (msg: string, meta?: object) => logged.push({ msg, meta }) };
      const c = coordinator({ url: secured.url, keyPrefix, fallbackPassword: password, logger });
      const c2 = coordinator({ url: secured.url, keyPrefix, fallbackPassword: password });
      await Promise.all([c.ready(), c2.ready()]);
      expect(await c.ping()).to.equal(true);
      const def = await c.putStream(streamDef('s1'));
      expect(await c2.getStream('s1')).to.deep.equal(def);
      const event = nextEvent(c2, (e) => e.type === 'test:auth');
      await c.publish({ type: 'test:auth' });
      await event;
      expect(logged.some((l) => /REDIS_PASSWORD is unset/.test(l.msg))).to.equal(true);
      expect(JSON.stringify(logged)).to.not.include(password);
    });

    it('never shows the password when it is wrong', async () => {
      const logged: Logged[] = [];
      const wrong = `wrong-${randomBytes(6).toString('hex')}`;
      const c = coordinator({
        url: secured.url,
        password: wrong,
        logger: { warn: (msg, meta) => logged.push({ msg, meta }) },
      });
      expect(await c.ping()).to.equal(false);
      let message = '';
      await unavailableWithin(() =>
        c.getStream('s1').catch((err: Error) => {
          message = err.message;
          throw err;
        }),
      );
      expect(message).to.match(/WRONGPASS|unavailable/);
      expect(message).to.not.include(wrong);
      expect(JSON.stringify(logged)).to.not.include(wrong);
    });

    it('uses a password given in the URL', async () => {
      const url = secured.url.replace('redis://', `redis://:${password}@`);
      const c = coordinator({ url, keyPrefix: randomPrefix() });
      await c.ready();
      expect(await c.ping()).to.equal(true);
    });
  });
});
