// Rolling restart (issue 18 point 6, DESIGN.md §5): SIGHUP to the primary replaces every
// worker one at a time while viewers of a live channel and of a shared transcode play on both
// workers. Sampled throughout: upstream connections per path at the origin and FFmpeg
// processes by pid (never two at once); every viewer's longest media gap; nobody cut.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { createOn, isAlive, startCluster, type TestCluster } from './support/cluster.js';
import { startOrigin, type Origin } from './support/origin.js';
import { report } from './support/report.js';
import { gapMeter, sample } from './support/sampler.js';
import { openViewer, waitFor, type TsViewer } from './support/ts-viewer.js';

const COPY = '-i {input_url} -c copy {output_args}';

function ffmpegCount(marker: string): number {
  const out = execFileSync('ps', ['-eo', 'args='], { encoding: 'utf8' });
  return out.split('\n').filter((l) => /^\S*ffmpeg\b/.test(l) && l.includes(marker)).length;
}

describe('rolling restart on SIGHUP', function () {
  this.timeout(180_000);
  let origin: Origin;
  let cluster: TestCluster;

  before(async () => {
    origin = await startOrigin();
    // VIEWER_HANDOFF off: viewers stay on the worker the primary dealt them to (round robin), so
    // both workers hold viewers whichever worker owns each stream (with it on, both streams'
    // viewers moved to one owner in some runs).
    cluster = await startCluster({ WORKERS: '2', SHARED_STREAM_GRACE: '1', LEASE_TTL_MS: '1500', DRAIN_TIMEOUT: '60', VIEWER_HANDOFF: 'false' }, 60_000);
  });
  after(async () => {
    await cluster?.stop(90_000);
    await origin?.close();
  });

  it('replaces every worker with no viewer cut and never two sources for one stream', async () => {
    const live = '/live/roll.ts';
    const tx = '/live/roll-tx.ts';
    const liveId = await createOn(cluster, origin.url(live));
    const created = await cluster.api<{ stream_id: string }>('/transcode', { method: 'POST', body: JSON.stringify({ url: origin.url(tx), profile: COPY }) });
    expect(created.status).to.equal(200);
    const viewers: TsViewer[] = [
      ...Array.from({ length: 6 }, () => openViewer(cluster.url(`/stream/${liveId}`))),
      ...Array.from({ length: 4 }, () => openViewer(cluster.url(`/stream/${created.body.stream_id}`))),
    ];
    const upstreamLive = sample(() => origin.openConnections(live));
    const upstreamTx = sample(() => origin.openConnections(tx));
    const ffmpeg = sample(() => ffmpegCount(tx), 250);
    const late: TsViewer[] = [];
    try {
      await waitFor(() => viewers.every((v) => v.bytes() > 188 * 200), 40_000, 'every viewer to play');
      const workers = new Set(await Promise.all(viewers.map(async (v) => String((await v.headers)['x-worker-id']))));
      expect(workers.size, 'viewers on both workers').to.equal(2);
      const gaps = viewers.map((v) => gapMeter(() => v.bytes()));
      const oldPids = cluster.workerPids();
      expect(oldPids).to.have.length(2);
      const t0 = Date.now();
      process.kill(cluster.pid, 'SIGHUP');
      await waitFor(() => cluster.logs.some((l) => l.message === 'rolling restart done'), 120_000, 'the rolling restart');
      report('rolling restart of 2 workers took (ms)', Date.now() - t0);
      const marks = viewers.map((v) => v.bytes());
      await waitFor(() => viewers.every((v, i) => v.bytes() - marks[i]! > 100_000), 20_000, 'media on every viewer after the restart');
      for (const v of viewers) expect(v.isClosed(), 'no viewer cut').to.equal(false);
      report('rolling restart: longest media gap of a viewer (ms)', Math.max(...gaps.map((g) => g.stop())));
      // New viewers land on the replacements and play.
      late.push(openViewer(cluster.url(`/stream/${liveId}`)), openViewer(cluster.url(`/stream/${liveId}`)));
      await waitFor(() => late.every((v) => v.bytes() > 188 * 200), 20_000, 'new viewers to play');
      for (const v of late) expect(String((await v.headers)['x-worker-id'])).to.match(/r1$/);
      // Old workers keep their viewers (DRAIN_TIMEOUT 60 s) and leave once those are gone.
      expect(oldPids.every(isAlive)).to.equal(true);
      viewers.forEach((v) => v.close());
      await waitFor(() => oldPids.every((p) => !isAlive(p)), 20_000, 'the old workers to exit after their viewers left');
      const now = cluster.workerPids();
      expect(now).to.have.length(2);
      expect(now.some((p) => oldPids.includes(p))).to.equal(false);
    } finally {
      viewers.forEach((v) => v.close());
      late.forEach((v) => v.close());
      expect(upstreamLive.stop(), 'live upstream connections at the same instant').to.equal(1);
      expect(upstreamTx.stop(), 'transcode input connections at the same instant').to.equal(1);
      expect(ffmpeg.stop(), 'FFmpeg processes at the same instant').to.equal(1);
    }
  });
});
