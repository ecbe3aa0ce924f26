// The admission rule on its own (issue 19, target 6), driven tick by tick: which load samples
// make a worker refuse new viewers, when it takes them again, and when it sheds its newest.
import { expect } from 'chai';
import { Admission, CLOCK_LIMIT, LOOP_STALL_MS, type LoadSample } from '../src/streams/live/admission.js';
import { AppError } from '../src/errors.js';
import { MediaClock } from '../src/streams/mpegts/media-clock.js';

interface Rig {
  adm: Admission;
  /** Sets what the next ticks see. */
  set(elu: number, fastestClock: number | null, viewers?: number, lagging?: number): void;
  /** Whether a new viewer is admitted now (the count is then undone by the next tick). */
  admits(): boolean;
  shed: number[];
}

function rig(shedShare = 0.03): Rig {
  let elu = 0;
  let sample: LoadSample = { viewers: 1000, lagging: 0, fastestClock: null };
  const shed: number[] = [];
  const adm = new Admission({
    maxViewers: 0, laggingShare: 0.1, eluLimit: 0.95, retryAfterS: 5, shedShare,
    sample: () => sample, utilization: () => elu, shed: (share) => { const n = Math.ceil(sample.viewers * share); shed.push(n); return n; }, intervalMs: 3_600_000,
  });
  return {
    adm,
    shed,
    set(e, clock, viewers = 1000, lagging = 0) {
      elu = e;
      sample = { viewers, lagging, fastestClock: clock };
    },
    admits() {
      try {
        adm.admit();
        return true;
      } catch (err) {
        expect(err).to.be.instanceOf(AppError);
        expect((err as AppError).status).to.equal(503);
        return false;
      }
    },
  };
}

/** Makes rigs for one describe block; each is closed after its test. */
function rigsClosedAfterEach(): (shedShare?: number) => Rig {
  const made: Rig[] = [];
  afterEach(() => made.splice(0).forEach((r) => r.adm.close()));
  return (share) => {
    const r = rig(share);
    made.push(r);
    return r;
  };
}

describe('admission rule: a worker reading its sources late (issue 19)', () => {
  const make = rigsClosedAfterEach();

  it('a busy loop alone, or a slow clock alone (a slow provider), refuses nobody', () => {
    const r = make();
    r.set(1.0, 1.0);
    for (let i = 0; i < 10; i++) r.adm.tick();
    expect(r.admits()).to.equal(true);
    r.set(0.5, 0.4);
    for (let i = 0; i < 10; i++) r.adm.tick();
    expect(r.admits()).to.equal(true);
    expect(r.shed).to.deep.equal([]);
  });

  it('busy and late for two ticks in a row: new viewers get 503 saying why; three fine ticks admit again', () => {
    const r = make();
    r.set(0.99, CLOCK_LIMIT - 0.05);
    r.adm.tick();
    expect(r.admits(), 'one late tick is noise').to.equal(true);
    r.adm.tick();
    expect(r.admits()).to.equal(false);
    try {
      r.adm.admit();
    } catch (err) {
      expect((err as AppError).message).to.match(/reads its sources late/);
    }
    r.set(0.99, 1.0);
    r.adm.tick();
    r.adm.tick();
    expect(r.admits(), 'still recovering').to.equal(false);
    r.adm.tick();
    expect(r.admits()).to.equal(true);
  });

  it('one late tick between fine ones does not refuse (a burst of joins, a provider hiccup)', () => {
    const r = make();
    for (let i = 0; i < 6; i++) {
      r.set(0.99, i % 2 === 0 ? 0.8 : 1.0);
      r.adm.tick();
      expect(r.admits()).to.equal(true);
    }
  });

  it('still late after refusing: sheds ADMISSION_SHED_SHARE of its viewers each late tick, none with 0', () => {
    const r = make(0.03);
    r.set(1.0, 0.8, 2000);
    for (let i = 0; i < 5; i++) r.adm.tick();
    // Behind from tick 2; shedding once behind for more than two ticks.
    expect(r.shed).to.deep.equal([60, 60]);
    expect(r.adm.shed).to.equal(120);
    for (let i = 0; i < 20; i++) r.adm.tick();
    expect(r.shed, 'at most 10 late ticks an episode shed').to.have.length(10);
    r.set(1.0, 1.0, 1400);
    r.adm.tick();
    expect(r.shed, 'no shedding while the clock is fine').to.have.length(10);
    const off = make(0);
    off.set(1.0, 0.8, 2000);
    for (let i = 0; i < 6; i++) off.adm.tick();
    expect(off.shed).to.deep.equal([]);
    expect(off.admits()).to.equal(false);
  });
});

describe('admission rule: a worker whose loop stalls (issue 19, target 6)', () => {
  const make = rigsClosedAfterEach();

  it('busy, no clock to judge by (read in bursts), ticks LOOP_STALL_MS late twice in a row: refused, then shed; on time again: admitted', () => {
    const r = make(0.03);
    r.set(0.99, null, 2000);
    r.adm.tick(LOOP_STALL_MS + 300);
    expect(r.admits(), 'one stalled tick is a GC or a burst of joins').to.equal(true);
    r.adm.tick(LOOP_STALL_MS + 300);
    expect(() => r.adm.admit()).to.throw(AppError, /event loop stalls: a 3600 s tick ran 700 ms late/);
    r.adm.tick(LOOP_STALL_MS + 300);
    r.adm.tick(LOOP_STALL_MS + 300);
    expect(r.shed, 'shedding once behind for more than two ticks').to.deep.equal([60]);
    r.set(0.99, null, 1940);
    r.adm.tick(50);
    expect(() => r.adm.admit(), 'recovering').to.throw(AppError, /recovering: its event loop stalls/);
    for (let i = 0; i < 2; i++) r.adm.tick(50);
    expect(r.admits()).to.equal(true);
    expect(r.shed).to.have.length(1);
  });

  it('busy and stalled with the clock reading ~1 (a loop catching up in bursts): late all the same', () => {
    const r = make(0.03);
    r.set(1.0, 1.05, 2000);
    r.adm.tick(LOOP_STALL_MS + 100);
    r.adm.tick(LOOP_STALL_MS + 100);
    expect(r.admits()).to.equal(false);
  });

  it('a stalled tick on a loop under the limit (one long task, then idle), or busy ticks under LOOP_STALL_MS, refuse nobody', () => {
    const r = make(0.03);
    r.set(0.5, null, 2000);
    for (let i = 0; i < 6; i++) r.adm.tick(LOOP_STALL_MS * 3);
    expect(r.admits()).to.equal(true);
    r.set(1.0, 1.0, 2000);
    for (let i = 0; i < 6; i++) r.adm.tick(LOOP_STALL_MS - 1);
    expect(r.admits()).to.equal(true);
    expect(r.shed).to.deep.equal([]);
  });
});

describe('admission rule: a crowd of viewers lagging together (issue 19, target 6)', () => {
  const make = rigsClosedAfterEach();

  it('most viewers lagging with a busy loop, sources on time: refuses at once, sheds the newest after SHED_AFTER ticks', () => {
    const r = make(0.03);
    r.set(0.85, 1.0, 2000, 1200);
    r.adm.tick();
    expect(r.admits(), 'a crowd lagging: refused').to.equal(false);
    r.adm.tick();
    expect(r.shed, 'refusing alone may be enough: no shedding for SHED_AFTER ticks').to.deep.equal([]);
    r.adm.tick();
    expect(r.shed).to.deep.equal([60]);
    for (let i = 0; i < 20; i++) r.adm.tick();
    expect(r.shed, 'at most 10 ticks an episode').to.have.length(10);
    // Back at rate: no more shedding, and new viewers are taken again.
    r.set(0.85, 1.0, 1700, 0);
    r.adm.tick();
    expect(r.shed).to.have.length(10);
    expect(r.admits()).to.equal(true);
  });

  it('a crowd lagging on an idle loop (paused players, one slow network) is refused newcomers but never shed', () => {
    const r = make(0.03);
    r.set(0.3, 1.0, 40, 30);
    for (let i = 0; i < 8; i++) r.adm.tick();
    expect(r.admits()).to.equal(false);
    expect(r.shed).to.deep.equal([]);
  });

  it('a few lagging viewers on a busy loop (under half) shed nobody', () => {
    const r = make(0.03);
    r.set(0.9, 1.0, 2000, 300);
    for (let i = 0; i < 8; i++) r.adm.tick();
    expect(r.shed).to.deep.equal([]);
  });
});

describe('MediaClock: media seconds per wall second from the PCR', () => {
  const HZ = 90_000;

  it('a source on time is ~1, one read late is below 1, unknown before 1.5 s', () => {
    const c = new MediaClock();
    for (let t = 0; t <= 1000; t += 100) c.sample(t, (t / 1000) * HZ);
    expect(c.ratio(1000)).to.equal(null);
    for (let t = 1100; t <= 4000; t += 100) c.sample(t, (t / 1000) * HZ);
    expect(c.ratio(4000)).to.be.closeTo(1, 0.01);
    // From here 0.8 s of media per second.
    let media = 4;
    for (let t = 4100; t <= 7000; t += 100) c.sample(t, (media += 0.08) * HZ);
    expect(c.ratio(7000)).to.be.closeTo(0.8, 0.01);
  });

  it('a source that stopped arriving counts its silence; a PCR jump (a loop, a splice) restarts the window', () => {
    const c = new MediaClock();
    for (let t = 0; t <= 3000; t += 100) c.sample(t, (t / 1000) * HZ);
    expect(c.ratio(3200)).to.be.closeTo(1, 0.01); // a pause shorter than 250 ms is the source's pace
    expect(c.ratio(5000)!).to.be.below(0.7);
    expect(c.ratio(9000)).to.equal(null); // no PCR for 5 s: no clock to judge by
    const j = new MediaClock();
    for (let t = 0; t <= 3000; t += 100) j.sample(t, (t / 1000) * HZ);
    j.sample(3100, 3600 * HZ); // an hour ahead
    expect(j.ratio(3100)).to.equal(null);
    for (let t = 3200; t <= 5000; t += 100) j.sample(t, (3600 + (t - 3100) / 1000) * HZ);
    expect(j.ratio(5000)).to.be.closeTo(1, 0.01);
  });

  it('a source that comes in bursts (an HLS segment of 6 s in one write) has no ratio, however its bursts fall', () => {
    for (const every of [6000, 3000, 1000]) {
      const c = new MediaClock();
      for (let t = 0, media = 0; t <= 30_000; t += every, media += 6) {
        c.sample(t, media * HZ);
        for (const at of [t, t + every / 2, t + every - 1]) expect(c.ratio(at), `${every} ms apart, at ${at}`).to.equal(null);
      }
    }
  });

  it('the 33-bit PCR wrap is not a jump', () => {
    const c = new MediaClock();
    const start = 2 ** 33 - HZ; // one second before the wrap
    for (let t = 0; t <= 3000; t += 100) c.sample(t, (start + (t / 1000) * HZ) % 2 ** 33);
    expect(c.ratio(3000)).to.be.closeTo(1, 0.01);
  });
});
