// An owner whose event loop stalls past its lease deadline (what a SIGSTOPped worker does
// when it is resumed with SIGCONT, or a long pause) serves the I/O that waited before its
// overdue timers: the upstream bytes queued in its socket, FFmpeg's output queued in its
// pipe. Issue 18: those bytes must not be passed on (a new owner may be feeding viewers
// already), and the source must stop at once. Here the stall is made on purpose in this
// process, inside a timer callback, so the next thing the loop does is poll I/O; the origin
// runs in its own process and keeps writing meanwhile.
import { expect } from 'chai';
import { isAlive } from './support/cluster.js';
import { startOriginProcess, type OriginProcess } from './support/origin-process.js';
import { startProxy, type TestProxy } from './support/proxy.js';
import { report } from './support/report.js';
import { openViewer, sleep, waitFor } from './support/ts-viewer.js';
import type { LiveSession, OwnedSource } from '../src/streams/live/live-session.js';

const TTL_MS = 3000;

/** Blocks this whole process (event loop included) for `ms`. */
function stall(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

describe('lease deadline on the data path (a stalled owner)', function () {
  this.timeout(60_000);
  let origin: OriginProcess;
  let proxy: TestProxy;

  before(async () => {
    origin = await startOriginProcess();
    // CHANNEL_COALESCE_MS=0: readers are woken inside the source's data path (the stall must
    // happen there); with coalescing they are woken from a timer, and after the stall the
    // lease's overdue renewal may run first and succeed (nobody took the lease meanwhile).
    proxy = await startProxy({ LEASE_TTL_MS: String(TTL_MS), SHARED_STREAM_GRACE: '1', CHANNEL_COALESCE_MS: '0' });
  });
  after(async () => {
    await proxy?.close();
    await origin?.close();
  });

  /**
   * Plays `id`, stalls the process past the lease deadline inside the source's data path, and
   * counts the source bytes the channel took in after the stall and before the loop got to its
   * (overdue) timers: bytes passed on after the deadline, unless the data path checks it.
   */
  async function stallOwner(id: string): Promise<{ staleBytes: number; before: OwnedSource; session: LiveSession }> {
    const viewer = openViewer(proxy.url(`/stream/${id}`));
    try {
      await viewer.firstBytes(188 * 500);
      const session = proxy.worker.engine.sessionsOf(id)[0]!;
      const before = session.ownedSource!;
      expect(before, 'this worker owns the source').to.not.equal(null);
      let staleBytes = 0;
      let armed = false;
      let stalled = false;
      /** From the stall's end to the check phase: the I/O served before the overdue timers. */
      let window = false;
      let seen = session.channel.bytesIn;
      const watcher = {
        wake: () => {
          const added = session.channel.bytesIn - seen;
          seen = session.channel.bytesIn;
          const source = session.ownedSource;
          if (window && (source === before || source === null)) staleBytes += added;
          if (armed && added > 0) {
            // Inside the source's data path, with more bytes of the same read (or the next
            // read) still to come: the freeze happens here.
            armed = false;
            stall(TTL_MS + 800);
            stalled = window = true;
            setImmediate(() => (window = false));
          }
        },
        end: () => undefined,
      };
      session.channel.addReader(watcher);
      // Let the upstream pile up in the socket (FFmpeg fill its pipe), so the next read is a
      // full one and the loop reads again at once (well inside the deadline: renewals every
      // TTL/3, deadline TTL - 20 % after one).
      stall(1000);
      armed = true;
      await waitFor(() => stalled, 10_000, 'the stall');
      await sleep(1500);
      expect(staleBytes, 'bytes passed on after the lease deadline by the source that owned it').to.equal(0);
      await waitFor(() => session.ownedSource !== null && session.ownedSource !== before, 10_000, 'a new source after the stall');
      session.channel.removeReader(watcher);
      expect(viewer.isClosed(), 'the viewer stays').to.equal(false);
      return { staleBytes, before, session };
    } finally {
      viewer.close();
    }
  }

  it('an HTTP source passes on no byte read after its lease deadline', async () => {
    const res = await fetch(proxy.url('/streams'), {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ url: origin.url('/live/stall-http.ts') }),
    });
    const { stream_id: id } = (await res.json()) as { stream_id: string };
    const { staleBytes } = await stallOwner(id);
    report('stalled HTTP owner: bytes passed on after its lease deadline', staleBytes);
    expect(staleBytes).to.equal(0);
  });

  it('an FFmpeg source passes on no byte after its lease deadline, and its FFmpeg is gone', async () => {
    const res = await fetch(proxy.url('/transcode'), {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ url: origin.url('/live/stall-tx.ts'), profile: '-i {input_url} -c copy {output_args}' }),
    });
    const { stream_id: id } = (await res.json()) as { stream_id: string };
    const viewerFirst = openViewer(proxy.url(`/stream/${id}`));
    await viewerFirst.firstBytes(188 * 200);
    const pid = proxy.worker.engine.sessionsOf(id)[0]!.ownedSource!.pid!;
    viewerFirst.close();
    const { staleBytes } = await stallOwner(id);
    report('stalled FFmpeg owner: bytes passed on after its lease deadline', staleBytes);
    expect(staleBytes).to.equal(0);
    // Killed (SIGKILL) when the data path found the deadline passed.
    expect(isAlive(pid), 'the stalled owner\'s FFmpeg').to.equal(false);
  });
});
