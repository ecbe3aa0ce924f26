// Issue 19, target 4: a process collects once after a burst of departures has ended
// (src/quiet-gc.ts), so the garbage of finished viewers does not sit in V8's old space until
// its far-away limit. The collection itself is real V8; the timing is checked with a counter.
import { expect } from 'chai';
import { runInNewContext } from 'node:vm';
import { fullGc, QuietGc } from '../src/quiet-gc.js';
import { sleep } from './support/ts-viewer.js';

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
