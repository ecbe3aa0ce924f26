// Issue 19, target 4: a process collects once after a burst of departures has ended
// (src/quiet-gc.ts), so the garbage of finished viewers does not sit in V8's old space until
// its far-away limit. The collection itself is real V8; the timing is checked with a counter.
import { expect } from 'chai';
import { runInNewContext } from 'node:vm';
import { fullGc, QuietGc } from '../src/quiet-gc.js';
import { createOn, startCluster, type TestCluster } from './support/cluster.js';
import { startOrigin, type Origin } from './support/origin.js';
import { openViewer, sleep, waitFor, type TsViewer } from './support/ts-viewer.js';

// Long enough that a late timer on a loaded box is not taken for a quiet period.
const QUIET_MS = 250;

describe('quiet GC', () => {
  let gc: QuietGc | null = null;
  afterEach(() => gc?.close());

  const counting = (minEvents: number): { calls: () => number } => {
    let calls = 0;
    gc = new QuietGc({ minEvents, quietMs: QUIET_MS, collect: () => calls++ });
    return { calls: () => calls };
  };

  it('does not collect for fewer events than the minimum, however quiet', async () => {
    const c = counting(10);
    gc!.note(9);
    await sleep(QUIET_MS * 4);
    expect(c.calls()).to.equal(0);
    expect(gc!.collections).to.equal(0);
  });

  it('collects once after the minimum and a quiet period, then counts from zero', async () => {
    const c = counting(10);
    for (let i = 0; i < 10; i++) gc!.note();
    await sleep(QUIET_MS * 3);
    expect(c.calls()).to.equal(1);
    gc!.note(9);
    await sleep(QUIET_MS * 3);
    expect(c.calls()).to.equal(1);
    gc!.note();
    await sleep(QUIET_MS * 3);
    expect(c.calls()).to.equal(2);
  });

  it('waits while events keep coming, and collects once they stop', async () => {
    const c = counting(5);
    const until = Date.now() + QUIET_MS * 5;
    while (Date.now() < until) {
      gc!.note();
      await sleep(QUIET_MS / 10);
    }
    expect(c.calls()).to.equal(0);
    await sleep(QUIET_MS * 3);
    expect(c.calls()).to.equal(1);
  });

  it('skips a collection while `when` says no (a worker still holding viewers), and forgets those events', async () => {
    let calls = 0;
    let busy = true;
    gc = new QuietGc({ minEvents: 5, quietMs: QUIET_MS, collect: () => calls++, when: () => !busy });
    gc.note(5);
    await sleep(QUIET_MS * 3);
    expect(calls).to.equal(0);
    busy = false;
    gc.note(4);
    await sleep(QUIET_MS * 3);
    expect(calls, 'the skipped events do not count again').to.equal(0);
    gc.note();
    await sleep(QUIET_MS * 3);
    expect(calls).to.equal(1);
  });

  it('takes V8\'s full collection without --expose-gc, and leaves no global gc behind', async () => {
    const collect = fullGc();
    expect(collect).to.be.a('function');
    let garbage: object | null = { big: Buffer.alloc(1024) };
    const ref = new WeakRef(garbage);
    garbage = null;
    // A WeakRef's target stays alive until the job that made it ends.
    await new Promise((resolve) => setImmediate(resolve));
    collect!();
    expect(ref.deref()).to.equal(undefined);
    expect(runInNewContext('typeof gc')).to.equal('undefined');
  });
});

describe('quiet GC in a cluster: the primary and the workers collect once a crowd has left', function () {
  this.timeout(120_000);
  let origin: Origin;
  let cluster: TestCluster;
  const viewers: TsViewer[] = [];

  before(async () => {
    origin = await startOrigin();
    cluster = await startCluster({ WORKERS: '2', SHARED_STREAM_GRACE: '1' }, 60_000);
  });
  after(async () => {
    for (const v of viewers) v.close();
    await cluster?.stop();
    await origin?.close();
  });

  /** Major (mark-compact) collections per process, from /metrics (prom-client's GC histogram). */
  const majors = async (): Promise<Record<string, number>> => {
    const text = await fetch(cluster.url('/metrics')).then((r) => r.text());
    const out: Record<string, number> = {};
    for (const m of text.matchAll(/^nodejs_gc_duration_seconds_count\{([^}]*)\} (\S+)$/gm)) {
      if (!/kind="major"/.test(m[1]!)) continue;
      const worker = /worker="([^"]+)"/.exec(m[1]!)?.[1] ?? '?';
      out[worker] = (out[worker] ?? 0) + Number(m[2]);
    }
    return out;
  };

  it('240 viewers leave: within a few seconds the primary and every worker that lost 100 or more ran one more major GC', async () => {
    const id = await createOn(cluster, origin.url('/live/quiet-gc.ts'));
    for (let i = 0; i < 240; i++) viewers.push(openViewer(cluster.url(`/stream/${id}`)));
    await Promise.all(viewers.map((v) => v.firstBytes(188)));
    const perWorker = new Map<string, number>();
    for (const h of await Promise.all(viewers.map((v) => v.headers))) {
      const name = String(h['x-worker-id']);
      perWorker.set(name, (perWorker.get(name) ?? 0) + 1);
    }
    // The minimum (100 departures) is per process: a worker that lost fewer is not expected to.
    const crowded = [...perWorker].filter(([, n]) => n >= 100).map(([name]) => name);
    expect(crowded, `viewers per worker: ${JSON.stringify([...perWorker])}`).to.not.be.empty;
    const before = await majors(); // a process that never ran a major GC has no series yet: 0
    for (const v of viewers.splice(0)) v.close();
    // 100+ departures, then 2 s without one: one collection each. Workers label their series
    // by index; a viewer's x-worker-id name ends with it.
    const expected = ['primary', ...crowded.map((name) => name.split('-').pop()!)];
    let grew: string[] = [];
    await waitFor(async () => {
      const now = await majors();
      grew = Object.keys(now).filter((w) => (now[w] ?? 0) > (before[w] ?? 0));
      return expected.every((w) => grew.includes(w));
    }, 15_000, 'the primary and the workers that held viewers to collect').catch(() => undefined);
    expect(grew).to.include.members(expected);
  });
});
