// The cluster primary's front door (src/primary/connection-dispatcher.ts), on the real
// product: a worker whose loop is stalled is simulated by SIGSTOP (no JS runs in it, exactly
// what a worker past its knee looks like from outside for seconds at a time).
import http from 'node:http';
import net from 'node:net';
import { expect } from 'chai';
import { startCluster, type TestCluster } from './support/cluster.js';
import { waitFor } from './support/ts-viewer.js';

interface Answer {
  status: number;
  ms: number;
  worker: string | null;
  retryAfter: string | null;
  body: string;
}

/** One GET on a connection of its own (a pooled one would stay on one worker). */
function get(c: TestCluster, path: string, timeoutMs = 20_000): Promise<Answer> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: c.port, path, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({
        status: res.statusCode ?? 0, ms: performance.now() - t0, body,
        worker: (res.headers['x-worker-id'] as string | undefined) ?? null, retryAfter: (res.headers['retry-after'] as string | undefined) ?? null,
      }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer to ${path} within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

const cont = (pids: number[]): void => {
  for (const p of pids) {
    try {
      process.kill(p, 'SIGCONT');
    } catch {
      // gone
    }
  }
};

describe('the primary passes connections to workers', function () {
  this.timeout(90_000);
  let c: TestCluster | null = null;
  let stopped: number[] = [];

  afterEach(async () => {
    cont(stopped);
    stopped = [];
    await c?.stop();
    c = null;
  });

  it('every worker has sat on its last connection for ADMISSION_QUEUE_MS (loop stalled): the primary answers new ones 503 OVERLOADED + Retry-After; the one already sent is served once the worker runs again', async () => {
    c = await startCluster({ WORKERS: '1', ADMISSION_QUEUE_MS: '400', METRICS_PUBLIC: 'true' });
    expect((await get(c, '/health')).status).to.equal(200);
    stopped = c.workerPids();
    expect(stopped).to.have.length(1);
    process.kill(stopped[0]!, 'SIGSTOP');
    // The first goes to the (stalled) worker and waits there; the rest wait here, then are refused.
    const first = get(c, '/health');
    await new Promise((r) => setTimeout(r, 100));
    const refused = await Promise.all([1, 2, 3, 4].map(() => get(c!, '/health')));
    for (const a of refused) {
      expect(a.status).to.equal(503);
      expect(a.retryAfter).to.equal('5');
      expect(JSON.parse(a.body)).to.deep.include({ code: 'OVERLOADED' });
      expect(a.ms).to.be.below(10_000);
    }
    cont(stopped);
    const served = await first;
    expect(served.status, 'the connection sent before the stall is not lost').to.equal(200);
    expect((await get(c, '/health')).status).to.equal(200);
    const metrics = (await get(c, '/metrics')).body;
    const line = metrics.split('\n').find((l) => l.startsWith('m3u_proxy_connections_refused_total '));
    expect(Number(line?.split(' ')[1])).to.equal(4);
  });

  it('a burst on a healthy host waits its turn and is served: 600 connections at once (each worker takes one a loop turn: the last wait over a second on this box), none refused', async () => {
    c = await startCluster({ WORKERS: '2', ADMISSION_QUEUE_MS: '500' });
    const answers = await Promise.all(Array.from({ length: 600 }, () => get(c!, '/health')));
    const statuses = new Map<number, number>();
    for (const a of answers) statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
    expect([...statuses]).to.deep.equal([[200, 600]]);
    expect(new Set(answers.map((a) => a.worker)).size).to.equal(2);
  });

  it('a worker that exits before taking its connection leaves it to another worker, which serves it', async () => {
    // Nothing is refused here: the test is about the connection in flight.
    c = await startCluster({ WORKERS: '2', ADMISSION_QUEUE_MS: '0' });
    const [a, b] = c.workerPids();
    stopped = [a!];
    process.kill(a!, 'SIGSTOP');
    // Round robin: among a few connections one is sent to the stopped worker and waits.
    const answers = [1, 2, 3, 4].map(() => get(c!, '/health'));
    const settled: Answer[] = [];
    for (const p of answers) void p.then((x) => settled.push(x));
    await waitFor(() => settled.length === 3, 15_000, 'three answers from the running worker');
    const other = settled[0]!.worker;
    expect(settled.every((x) => x.status === 200 && x.worker === other)).to.equal(true);
    process.kill(a!, 'SIGKILL');
    await waitFor(() => settled.length === 4, 15_000, 'the stuck connection to be answered');
    expect(settled[3]).to.deep.include({ status: 200, worker: other });
    expect(c.workerPids()).to.include(b!);
  });

  it('PORT taken: the primary says it cannot listen and exits non-zero (no worker restart loop)', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const err = await startCluster({ WORKERS: '1', PORT: String(port) }, 30_000).then(() => null, (e: Error) => e);
      expect(err?.message).to.match(/cluster exited with 1/).and.to.match(/cannot listen/).and.to.match(/EADDRINUSE/);
    } finally {
      blocker.close();
    }
  });
});
