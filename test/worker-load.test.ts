// The worker's load report (src/worker-load.ts): what the primary's front door and viewer
// hand-off both read.
import { expect } from 'chai';
import { reportLoad, workerLoad, type WorkerLoadMessage } from '../src/worker-load.js';

describe('worker load report', () => {
  const wait = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

  it('reports at once, again within one look when the worker starts or stops refusing, else only every everyMs', async () => {
    const sent: WorkerLoadMessage[] = [];
    let load = { viewers: 3, overloaded: false };
    const stop = reportLoad({ workerId: 'w-1', load: () => load, send: (m) => sent.push(m), lookMs: 10, everyMs: 60_000 });
    try {
      expect(sent).to.deep.equal([{ t: 'worker:load', workerId: 'w-1', viewers: 3, overloaded: false }]);
      // The count alone changing is no reason to report before everyMs.
      load = { viewers: 900, overloaded: false };
      await wait(60);
      expect(sent).to.have.length(1);
      load = { viewers: 900, overloaded: true };
      await wait(60);
      expect(sent).to.have.length(2);
      expect(sent[1]).to.deep.equal({ t: 'worker:load', workerId: 'w-1', viewers: 900, overloaded: true });
      load = { viewers: 10, overloaded: false };
      await wait(60);
      expect(sent.map((m) => m.overloaded)).to.deep.equal([false, true, false]);
    } finally {
      stop();
    }
    const after = sent.length;
    load = { viewers: 1, overloaded: true };
    await wait(60);
    expect(sent, 'nothing after stop').to.have.length(after);
  });

  it('repeats an unchanged load every everyMs, and survives a primary that is gone', async () => {
    let calls = 0;
    const stop = reportLoad({ workerId: 'w-2', load: () => ({ viewers: 0, overloaded: false }), send: () => { calls++; throw new Error('channel closed'); }, lookMs: 5, everyMs: 20 });
    await wait(130);
    stop();
    // 130 ms at one report each 20 ms: about 7 (a look every 5 ms would make 27).
    expect(calls).to.be.within(3, 12);
  });

  it('reads only well-formed reports', () => {
    expect(workerLoad({ t: 'worker:load', workerId: 'w', viewers: '12', overloaded: 'yes' })).to.deep.equal({ workerId: 'w', viewers: 12, overloaded: false });
    expect(workerLoad({ t: 'worker:load', workerId: 'w', viewers: 5, overloaded: true })).to.deep.equal({ workerId: 'w', viewers: 5, overloaded: true });
    expect(workerLoad({ t: 'worker:load', viewers: 5 })).to.equal(null);
    expect(workerLoad({ t: 'conn:taken' })).to.equal(null);
    expect(workerLoad(null)).to.equal(null);
  });
});
