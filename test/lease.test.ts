import { expect } from 'chai';
import { startOrigin, type Origin } from './support/origin.js';
import { startProxy, type TestProxy } from './support/proxy.js';
import { openViewer, waitFor } from './support/ts-viewer.js';

describe('lease', function () {
  this.timeout(30_000);
  let origin: Origin;
  let proxy: TestProxy;

  before(async () => {
    origin = await startOrigin();
    proxy = await startProxy({ LEASE_TTL_MS: '600', SHARED_STREAM_GRACE: '0.5' });
  });
  after(async () => {
    await proxy.close();
    await origin.close();
  });

  it('a lost lease stops its source at once; the viewer stays and gets media when it is back', async () => {
    const path = '/live/lease.ts';
    const res = await fetch(proxy.url('/streams'), {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ url: origin.url(path) }),
    });
    const { stream_id: id } = (await res.json()) as { stream_id: string };
    const v = openViewer(proxy.url(`/stream/${id}`));
    try {
      await v.firstBytes(188);
      const key = `lease:${id}:1`;
      const owner = await proxy.coordinator.leaseHolder(key);
      expect(owner).to.match(/^test-1:/);
      // Someone else takes the lease behind the owner's back (a paused owner whose TTL ran out).
      await proxy.coordinator.releaseLeasesHeldBy('test-1');
      const stolen = await proxy.coordinator.acquireLease(key, 'intruder', 60_000);
      expect(stolen).to.not.equal(null);
      // The owner's next renewal (every TTL/3) fails and its upstream closes.
      await origin.waitForClosedAll(path, 2000);
      expect(v.isClosed()).to.equal(false);
      // The intruder goes away: the session takes the lease back and plays again.
      await proxy.coordinator.releaseLease(stolen!);
      await waitFor(() => origin.totalRequests(path) === 2, 5000, 'the source to restart');
      const mark = v.bytes();
      await waitFor(() => v.bytes() - mark > 50_000, 10_000, 'media again');
      expect(v.misaligned()).to.equal(0);
      expect(await proxy.coordinator.leaseHolder(key)).to.match(/^test-1:/);
    } finally {
      v.close();
    }
  });

  it('status writes are fenced by the lease epoch', async () => {
    const c = proxy.coordinator;
    const a = (await c.acquireLease('lease:fence:1', 'w-a', 300))!;
    await new Promise((r) => setTimeout(r, 400));
    const b = (await c.acquireLease('lease:fence:1', 'w-b', 5000))!;
    expect(b.epoch).to.be.greaterThan(a.epoch);
    const at = new Date().toISOString();
    expect(await c.setStreamStatus('fence', { status: 'running', owner: 'w-b', pid: 2, epoch: b.epoch, updatedAt: at })).to.equal(true);
    // The paused ex-owner wakes up and writes with its old epoch: rejected.
    expect(await c.setStreamStatus('fence', { status: 'stopped', owner: 'w-a', pid: 1, epoch: a.epoch, updatedAt: at })).to.equal(false);
    expect((await c.getStreamStatus('fence'))!.owner).to.equal('w-b');
  });
});

describe('lease keeper deadline', () => {
  it('a holder whose renewals never answer (a partitioned store) loses the lease before its TTL, every time', async () => {
    const { LeaseKeeper } = await import('../src/coordination/lease-keeper.js');
    const { MemoryCoordinator } = await import('../src/coordination/memory-coordinator.js');
    const ttlMs = 300;
    // 20 rounds: the deadline timer may wake a fraction of a millisecond early on libuv's
    // whole-millisecond clock; a keeper that ignored such a wake-up never lost its lease.
    for (let round = 0; round < 20; round++) {
      const store = new MemoryCoordinator();
      let partitioned = false;
      const renewLease = store.renewLease.bind(store);
      store.renewLease = (lease, ms) => (partitioned ? new Promise<boolean>(() => undefined) : renewLease(lease, ms));
      let lostAt = 0;
      const keeper = new LeaseKeeper({ coordinator: store, key: `lease:k${round}:1`, holder: 'w-1', ttlMs, onLost: () => { lostAt = Date.now(); } });
      expect(await keeper.acquire()).to.equal(true);
      await new Promise((r) => setTimeout(r, 150 + round));
      const cut = Date.now();
      partitioned = true;
      await waitFor(() => lostAt > 0, 2000, `round ${round}: the lease to be given up`);
      expect(lostAt - cut, `round ${round}`).to.be.lessThan(ttlMs);
      await store.close();
    }
  });
});

describe('lease keeper release after a stop', () => {
  /** A keeper holding `key` (TTL 200 ms) on a fresh embedded store, closed after `fn`. */
  async function withHeldLease(key: string, fn: (keeper: import('../src/coordination/lease-keeper.js').LeaseKeeper, store: import('../src/coordination/memory-coordinator.js').MemoryCoordinator) => Promise<void>): Promise<void> {
    const { LeaseKeeper } = await import('../src/coordination/lease-keeper.js');
    const { MemoryCoordinator } = await import('../src/coordination/memory-coordinator.js');
    const store = new MemoryCoordinator();
    try {
      const keeper = new LeaseKeeper({ coordinator: store, key, holder: 'w-1', ttlMs: 200, onLost: () => undefined });
      expect(await keeper.acquire()).to.equal(true);
      await fn(keeper, store);
    } finally {
      await store.close();
    }
  }

  it('releaseAfter keeps the lease (renewed past its TTL) until the stop settles, and gives it back then', () =>
    withHeldLease('lease:exit:1', async (keeper, store) => {
      let exited!: () => void;
      const released = keeper.releaseAfter(new Promise<void>((r) => { exited = r; }), 10_000);
      // Three TTLs later the process is still "exiting": nobody else may take the key.
      await new Promise((r) => setTimeout(r, 600));
      expect(await store.leaseHolder('lease:exit:1')).to.match(/^w-1:/);
      expect(await store.acquireLease('lease:exit:1', 'w-2', 200), 'another worker meanwhile').to.equal(null);
      exited();
      await released;
      expect(await store.leaseHolder('lease:exit:1')).to.equal(null);
    }));

  it('a stop that never settles (a process whose pipes outlive it) holds the lease maxWaitMs at most', () =>
    withHeldLease('lease:exit:2', async (keeper, store) => {
      const t0 = Date.now();
      await keeper.releaseAfter(new Promise<void>(() => undefined), 400);
      expect(Date.now() - t0).to.be.within(390, 2000);
      expect(await store.leaseHolder('lease:exit:2')).to.equal(null);
    }));
});
