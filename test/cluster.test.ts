import { expect } from 'chai';
import { childPids, createOn, isAlive, startCluster, type TestCluster } from './support/cluster.js';
import { startOrigin, type Origin } from './support/origin.js';
import { percentile, pidOf, report } from './support/report.js';
import { openViewer, sleep, waitFor, type TsViewer } from './support/ts-viewer.js';

interface WorkersBody {
  workers: Array<{ worker_id: string; pid: number; sources_owned: string[]; relays: { receiving: number; serving: number } }>;
}
interface StreamBody {
  stream: { client_count: number; owner: { worker_id: string; pid: number } | null; clients_by_worker: Record<string, number> };
}

const workerOf = async (v: TsViewer): Promise<string> => String((await v.headers)['x-worker-id']);

describe('cluster (embedded coordinator)', function () {
  this.timeout(90_000);
  let origin: Origin;
  let cluster: TestCluster;

  before(async () => {
    origin = await startOrigin();
    // Relays are what these tests are about: viewers stay on the worker they land on
    // (test/viewer-handoff.test.ts covers the default, where most of them move to the owner).
    cluster = await startCluster({ WORKERS: '4', SHARED_STREAM_GRACE: '1', LEASE_TTL_MS: '2000', VIEWER_HANDOFF: 'false' });
  });
  after(async () => {
    await cluster?.stop();
    await origin.close();
  });

  it('4 workers, 40 viewers landing on every worker: 1 upstream, at most 1 relay per worker', async () => {
    const path = '/live/cluster40.ts';
    const id = await createOn(cluster, origin.url(path));
    const viewers = Array.from({ length: 40 }, () => openViewer(cluster.url(`/stream/${id}`), { keepBody: true }));
    try {
      expect(await Promise.all(viewers.map((v) => v.status))).to.deep.equal(Array(40).fill(200));
      const workers = new Set(await Promise.all(viewers.map(workerOf)));
      expect(workers.size, 'viewers landed on every worker').to.equal(4);
      await waitFor(() => viewers.every((v) => v.bytes() >= 188 * 300), 20_000, 'every viewer to play');
      expect(origin.totalRequests(path)).to.equal(1);
      expect(origin.openConnections(path)).to.equal(1);
      for (const v of viewers) {
        expect((await v.firstBytes(1))[0]).to.equal(0x47);
        expect(v.misaligned()).to.equal(0);
      }
      // Heartbeats carry the relay counts: each worker receives at most one relay for the stream.
      await sleep(1200);
      const { body } = await cluster.api<WorkersBody>('/workers');
      expect(body.workers).to.have.length(4);
      const owners = body.workers.filter((w) => w.sources_owned.includes(`${id}:1`));
      expect(owners).to.have.length(1);
      for (const w of body.workers) {
        if (w === owners[0]) expect(w.relays.serving).to.equal(3);
        else expect(w.relays.receiving).to.equal(1);
      }
      // Viewers on every worker see the same bytes: a relayed viewer's stream is a run of the
      // owner-side viewer's stream.
      const byWorker = new Map<string, TsViewer>();
      for (const v of viewers) byWorker.set(await workerOf(v), v);
      const ownerViewer = byWorker.get(owners[0]!.worker_id)!;
      for (const [worker, v] of byWorker) {
        if (worker === owners[0]!.worker_id) continue;
        const sample = v.body().subarray(188 * 50, 188 * 250);
        expect(ownerViewer.body().indexOf(sample), `bytes seen on ${worker}`).to.be.greaterThan(-1);
      }
      const entry = await cluster.api<StreamBody>(`/streams/${id}`);
      expect(entry.body.stream.client_count).to.equal(40);
      expect(Object.keys(entry.body.stream.clients_by_worker)).to.have.length(4);
      expect(entry.body.stream.owner!.worker_id).to.equal(owners[0]!.worker_id);
    } finally {
      viewers.forEach((v) => v.close());
    }
    await origin.waitForClosedAll(path, 10_000);
  });

  it('50 simultaneous first requests for a new stream: 1 upstream connection', async () => {
    const path = '/live/burst50.ts';
    const id = await createOn(cluster, origin.url(path));
    const viewers = Array.from({ length: 50 }, () => openViewer(cluster.url(`/stream/${id}`)));
    try {
      await waitFor(() => viewers.every((v) => v.bytes() > 0), 20_000, 'every viewer to get bytes');
      expect(origin.totalRequests(path)).to.equal(1);
      const joins = viewers.map((v) => v.firstByteAt() - v.connectedAt);
      report('cold start, 50 simultaneous viewers, first byte p50 / p95 (ms)', `${percentile(joins, 50)} / ${percentile(joins, 95)}`);
    } finally {
      viewers.forEach((v) => v.close());
    }
  });

  it('a viewer joining on a non-owner worker starts at PAT at once', async () => {
    const path = '/live/nonowner.ts';
    const id = await createOn(cluster, origin.url(path));
    const first = openViewer(cluster.url(`/stream/${id}`));
    try {
      await first.firstBytes(188 * 1000);
      const ownerWorker = await workerOf(first);
      const joins: number[] = [];
      for (let i = 0; i < 8; i++) {
        const v = openViewer(cluster.url(`/stream/${id}`));
        const head = await v.firstBytes(188);
        if ((await workerOf(v)) !== ownerWorker) {
          joins.push(v.firstByteAt() - v.connectedAt);
          expect(pidOf(head, 0)).to.equal(0);
        }
        v.close();
      }
      expect(joins.length).to.be.greaterThan(0);
      report('warm join on a non-owner worker, first byte p50 / max (ms)', `${percentile(joins, 50)} / ${Math.max(...joins)}`);
    } finally {
      first.close();
    }
  });

  it('SIGKILL of the owning worker: viewers on other workers keep their connection and get media again', async () => {
    const path = '/live/takeover.ts';
    const id = await createOn(cluster, origin.url(path));
    const viewers = Array.from({ length: 12 }, () => openViewer(cluster.url(`/stream/${id}`)));
    await waitFor(() => viewers.every((v) => v.bytes() > 188 * 200), 20_000, 'every viewer to play');
    const before = (await cluster.api<StreamBody>(`/streams/${id}`)).body.stream.owner!;
    const survivors: TsViewer[] = [];
    for (const v of viewers) if ((await workerOf(v)) !== before.worker_id) survivors.push(v);
    expect(survivors.length).to.be.greaterThan(0);
    try {
      const killedAt = Date.now();
      process.kill(before.pid, 'SIGKILL');
      await waitFor(() => origin.totalRequests(path) >= 2, 15_000, 'a new upstream connection from the new owner');
      const takeover = Date.now() - killedAt;
      const marks = survivors.map((v) => v.bytes());
      // Real media again (more than keep-alive null packets): 100 KB each.
      await waitFor(() => survivors.every((v, i) => v.bytes() - marks[i]! > 100_000), 20_000, 'media after takeover');
      for (const v of survivors) {
        expect(v.isClosed()).to.equal(false);
        expect(v.misaligned()).to.equal(0);
      }
      const after = (await cluster.api<StreamBody>(`/streams/${id}`)).body.stream.owner;
      expect(after).to.not.equal(null);
      expect(after!.pid).to.not.equal(before.pid);
      expect(origin.openConnections(path)).to.equal(1);
      report('takeover after SIGKILL of the owner, to new upstream connection (ms)', takeover);
      // The killed slot comes back.
      await waitFor(async () => (await cluster.api<WorkersBody>('/workers')).body.workers.length === 4, 15_000, 'the worker to be restarted');
    } finally {
      viewers.forEach((v) => v.close());
    }
  });

  it('a crashed worker is restarted and counted', async () => {
    const pids = cluster.workerPids();
    process.kill(pids[0]!, 'SIGKILL');
    await waitFor(() => cluster.logs.some((l) => l.message === 'worker exited; restarting' && l.pid === pids[0]), 5000, 'the restart log');
    await waitFor(() => cluster.workerPids().length === 4 && !cluster.workerPids().includes(pids[0]!), 15_000, 'a new worker');
  });
});

describe('cluster shutdown', function () {
  this.timeout(60_000);

  it('SIGTERM: exits 0 and leaves no child process', async () => {
    const origin = await startOrigin();
    const cluster = await startCluster({ WORKERS: '2', DRAIN_TIMEOUT: '1' });
    try {
      const id = await createOn(cluster, origin.url('/live/term.ts'));
      const v = openViewer(cluster.url(`/stream/${id}`));
      await v.firstBytes(188);
      const workers = cluster.workerPids();
      expect(workers).to.have.length(2);
      expect(await cluster.stop()).to.equal(0);
      expect(childPids(cluster.pid)).to.deep.equal([]);
      for (const pid of workers) expect(isAlive(pid), `worker ${pid} gone`).to.equal(false);
      await v.closed;
      await origin.waitForClosedAll('/live/term.ts', 3000);
    } finally {
      await cluster.stop();
      await origin.close();
    }
  });
});

describe('one-process mode (npm run start:single)', function () {
  this.timeout(90_000);

  it('serves the API and a stream from one process, and exits 0 on SIGTERM', async () => {
    const origin = await startOrigin();
    const single = await startCluster({ DRAIN_TIMEOUT: '1' }, 60_000, 'single');
    try {
      expect(single.workerPids(), 'no worker processes').to.deep.equal([]);
      const id = await createOn(single, origin.url('/live/single.ts'));
      const v = openViewer(single.url(`/stream/${id}`));
      expect((await v.firstBytes(188))[0]).to.equal(0x47);
      const health = await single.api<{ status: string; workers: { expected: number; alive: number } }>('/health');
      expect(health.body.status).to.equal('healthy');
      expect(health.body.workers).to.deep.equal({ expected: 1, alive: 1 });
      v.close();
      expect(await single.stop()).to.equal(0);
    } finally {
      await single.stop();
      await origin.close();
    }
  });
});

