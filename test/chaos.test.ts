// The chaos run (bench/chaos.ts), short: every fault kind once against two hosts of two
// workers on one Redis. Fails on a duplicate source, a surviving viewer cut, a record or
// lease or process left, or a worker no longer serving.
import { expect } from 'chai';
import { runChaos } from '../bench/chaos.js';
import { report } from './support/report.js';

describe('chaos run (short)', function () {
  this.timeout(600_000);

  it('every fault once: one source per key, no surviving viewer cut, nothing left behind', async () => {
    const r = await runChaos({ seconds: 1, log: () => undefined });
    for (const [kind, ms] of Object.entries(r.longestGapMs)) report(`chaos: longest media gap, ${kind} (ms)`, ms);
    // Reported, not asserted: 1 short run in 6 cut 4 viewers of the resumed owner (issue 18,
    // open; the departure reasons below are there to find out why).
    report('chaos: viewers of the frozen worker cut', r.frozenViewersCut);
    report('chaos: viewer departures during SIGSTOP, by reason', JSON.stringify(r.departuresDuringSigstop));
    expect(Object.keys(r.faults)).to.have.length(7);
    expect(r.failures).to.deep.equal([]);
    expect(r.duplicateSources).to.equal(0);
    expect(r.survivorsDisconnected).to.equal(0);
    expect(r.clientRecordsLeft).to.equal(0);
    expect(r.leasesLeft).to.equal(0);
    expect(r.processesLeft).to.equal(0);
    expect(r.workersServing).to.equal(4);
  });
});
