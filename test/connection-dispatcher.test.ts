// The cluster primary's front door (src/primary/connection-dispatcher.ts), on the real
// product: a worker whose loop is stalled is simulated by SIGSTOP (no JS runs in it, exactly
// what a worker past its knee looks like from outside for seconds at a time).
import http from 'node:http';
import net from 'node:net';
import type { Worker } from 'node:cluster';
import { expect } from 'chai';
import { ConnectionDispatcher } from '../src/primary/connection-dispatcher.js';
import { createOn, startCluster, type TestCluster } from './support/cluster.js';
import { startOrigin, type Origin } from './support/origin.js';
import { openViewer, waitFor, type TsViewer } from './support/ts-viewer.js';

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

/** The status of a GET whose body is not read (a stream); the connection is closed at once. */
function peek(c: TestCluster, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port: c.port, path, agent: false, timeout: 10_000 }, (res) => {
      resolve(res.statusCode ?? 0);
      req.destroy();
    });
    req.on('timeout', () => req.destroy(new Error(`no answer to ${path}`)));
    req.on('error', (err) => (req.destroyed ? undefined : reject(err)));
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
  let origin: Origin | null = null;
  let stopped: number[] = [];
  const viewers: TsViewer[] = [];

  afterEach(async () => {
    cont(stopped);
    stopped = [];
    for (const v of viewers.splice(0)) v.close();
    await c?.stop();
    c = null;
    await origin?.close();
    origin = null;
  });

  it('no worker takes a connection for a second (loop stalled) while connections wait: the primary answers new viewers 503 OVERLOADED + Retry-After itself; other requests wait and are served, as is the one already sent', async () => {
    c = await startCluster({ WORKERS: '1', ADMISSION_QUEUE_MS: '400', METRICS_PUBLIC: 'true' });
    expect((await get(c, '/health')).status).to.equal(200);
    stopped = c.workerPids();
    expect(stopped).to.have.length(1);
    process.kill(stopped[0]!, 'SIGSTOP');
    // The first goes to the (stalled) worker and waits there; the rest wait here.
    const first = get(c, '/health');
    await new Promise((r) => setTimeout(r, 100));
    const others = [get(c, '/health'), get(c, '/streams')];
    const refused = await Promise.all([1, 2, 3, 4].map((i) => get(c!, `/stream/${'ab'.repeat(16)}?n=${i}`)));
    for (const a of refused) {
      expect(a.status).to.equal(503);
      expect(a.retryAfter).to.equal('5');
      expect(a.worker, 'answered by the primary').to.equal(null);
      expect(JSON.parse(a.body)).to.deep.include({ code: 'OVERLOADED' });
      expect(a.ms).to.be.below(10_000);
    }
    cont(stopped);
    expect((await first).status, 'the connection sent before the stall is not lost').to.equal(200);
    // Not viewers: they waited for the worker, their request line read here and passed on.
    expect((await Promise.all(others)).map((a) => a.status)).to.deep.equal([200, 200]);
    expect((await get(c, '/health')).status).to.equal(200);
    const metrics = (await get(c, '/metrics')).body;
    const line = metrics.split('\n').find((l) => l.startsWith('m3u_proxy_connections_refused_total '));
    expect(Number(line?.split(' ')[1])).to.equal(4);
  });

  it('ADMISSION_MAX_WAIT_MS: a new viewer that waited that long for a worker is answered 503 by the primary, even with the stall rule off; other requests keep waiting and are served', async () => {
    c = await startCluster({ WORKERS: '1', ADMISSION_QUEUE_MS: '0', ADMISSION_MAX_WAIT_MS: '800' });
    expect((await get(c, '/health')).status).to.equal(200);
    stopped = c.workerPids();
    process.kill(stopped[0]!, 'SIGSTOP');
    const first = get(c, '/health');
    await new Promise((r) => setTimeout(r, 100));
    const other = get(c, '/streams');
    const viewer = await get(c, `/stream/${'cd'.repeat(16)}`);
    expect(viewer).to.deep.include({ status: 503, retryAfter: '5', worker: null });
    expect(JSON.parse(viewer.body)).to.deep.include({ code: 'OVERLOADED' });
    expect(JSON.parse(viewer.body).detail).to.contain('waited over 800 ms for a worker');
    // Answered once its wait passed the limit, not at once and not never.
    expect(viewer.ms).to.be.within(700, 5000);
    cont(stopped);
    expect((await first).status).to.equal(200);
    expect((await other).status, 'not a viewer: it waits for the worker').to.equal(200);
  });

  it('every worker refuses new viewers (here: MAX_VIEWERS_PER_WORKER): the primary answers them itself; the API and /health still reach a worker', async () => {
    origin = await startOrigin();
    c = await startCluster({ WORKERS: '2', MAX_VIEWERS_PER_WORKER: '1', VIEWER_HANDOFF: 'false' });
    const id = await createOn(c, origin.url('/live/front-door.ts'));
    // One viewer each (round robin): both workers full.
    viewers.push(openViewer(c.url(`/stream/${id}`)), openViewer(c.url(`/stream/${id}`)));
    await Promise.all(viewers.map((v) => v.firstBytes(188)));
    const workers = new Set(await Promise.all(viewers.map(async (v) => String((await v.headers)['x-worker-id']))));
    expect(workers.size).to.equal(2);
    // Each worker reports it within a second; until then a worker answers the 503 itself.
    let a: Answer | null = null;
    await waitFor(async () => {
      a = await get(c!, `/stream/${id}`);
      return a.worker === null;
    }, 10_000, 'the primary to answer a new viewer itself');
    expect(a!).to.deep.include({ status: 503, retryAfter: '5' });
    expect(JSON.parse(a!.body)).to.deep.include({ code: 'OVERLOADED' });
    const health = await get(c, '/health');
    expect(health.status).to.equal(200);
    expect(health.worker).to.be.a('string');
    expect((await get(c, `/streams/${id}`)).status).to.equal(200);
    // The viewers leave (both: the owner's relay feed to the other worker counts as one of its
    // viewers while that worker's viewer stays): the workers take viewers again, and the
    // primary passes them on.
    for (const v of viewers.splice(0)) v.close();
    // Round robin: the next tries land on either worker, one of which has room again.
    await waitFor(async () => (await peek(c!, `/stream/${id}`)) === 200, 10_000, 'a new viewer to be served again');
  });

  it('a burst on a healthy host waits its turn and is served: 600 connections at once (each worker takes one a loop turn: the last waits over a second on this box), and a request that is not a new viewer is never refused', async () => {
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

  it('SIGTERM: connections still waiting at the primary get 503 SHUTTING_DOWN, not a reset', async () => {
    c = await startCluster({ WORKERS: '1', ADMISSION_QUEUE_MS: '0', DRAIN_TIMEOUT: '1' });
    stopped = c.workerPids();
    process.kill(stopped[0]!, 'SIGSTOP');
    const first = get(c, '/health').catch((err: Error) => err); // sent to the stopped worker
    await new Promise((r) => setTimeout(r, 100));
    const waiting = get(c, '/streams'); // waits at the primary
    await new Promise((r) => setTimeout(r, 200));
    c.child.kill('SIGTERM');
    const a = await waiting;
    expect(a.status).to.equal(503);
    expect(JSON.parse(a.body)).to.deep.include({ code: 'SHUTTING_DOWN' });
    cont(stopped);
    await first;
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

describe('the primary’s own 503 (raw, no HTTP parser)', function () {
  this.timeout(20_000);

  /**
   * Sends `parts` with `gapMs` between them on one connection, all of them even after the answer
   * came (half-open: the server's end does not end this side); resolves with all it read and how it ended.
   */
  function exchange(port: number, parts: string[], gapMs: number): Promise<{ text: string; reset: boolean }> {
    return new Promise((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      let text = '';
      let reset = false;
      s.setEncoding('utf8');
      s.on('data', (d: string) => (text += d));
      s.on('error', () => (reset = true));
      s.on('close', () => resolve({ text, reset }));
      s.on('connect', async () => {
        for (const p of parts) {
          if (s.destroyed) break;
          s.write(p);
          await new Promise((r) => setTimeout(r, gapMs));
        }
        if (!s.destroyed) s.end();
      });
    });
  }

  it('a new viewer refused (no worker runs) gets the whole 503 JSON with Retry-After even while it is still sending a large head; other requests are not answered here; a client sending on and on is cut', async () => {
    const d = new ConnectionDispatcher({ queueMs: 0, retryAfterS: 7, rootPath: '/proxy' });
    const port = await d.listen('127.0.0.1', 0);
    try {
      // The head goes on for 48 KiB after the answer was written: dropping it unread would reset the connection.
      const filler = Array.from({ length: 12 }, (_, i) => `X-Filler-${i}: ${'a'.repeat(4096)}\r\n`);
      for (const line of ['GET /stream/abc HTTP/1.1\r\n', 'GET /proxy/stream/abc.ts HTTP/1.1\r\n']) {
        const { text, reset } = await exchange(port, [line, 'Host: x\r\n', ...filler, '\r\n'], 5);
        expect(reset, 'connection reset').to.equal(false);
        const [head, body] = text.split('\r\n\r\n');
        expect(head).to.match(/^HTTP\/1\.1 503 Service Unavailable\r\n/);
        expect(head).to.match(/\r\nRetry-After: 7\r\n/);
        expect(head).to.match(/\r\nConnection: close(\r\n|$)/);
        const length = Number(/\r\nContent-Length: (\d+)/.exec(head!)?.[1]);
        expect(Buffer.byteLength(body!)).to.equal(length);
        const json = JSON.parse(body!) as { code: string; detail: string };
        expect(json.code).to.equal('OVERLOADED');
        expect(json.detail).to.contain('no worker is running');
      }
      expect(d.refused).to.equal(2);
      // Past 64 KiB read and dropped the primary lets go (no client holds a refused socket open).
      const flood = Array.from({ length: 40 }, () => `X-Flood: ${'b'.repeat(4096)}\r\n`);
      const t0 = performance.now();
      const cut = await exchange(port, ['GET /stream/abc HTTP/1.1\r\n', ...flood], 2);
      expect(cut.text).to.match(/^HTTP\/1\.1 503 /);
      expect(performance.now() - t0).to.be.below(4000);
      expect(d.refused).to.equal(3);
      // Not a new viewer: it waits for a worker (none comes), unanswered.
      const api = net.connect(port, '127.0.0.1');
      let got = '';
      api.on('data', (b) => (got += b.toString()));
      api.write('GET /streams HTTP/1.1\r\nHost: x\r\n\r\n');
      await new Promise((r) => setTimeout(r, 600));
      expect(got).to.equal('');
      expect(d.waiting).to.equal(1);
      api.destroy();
    } finally {
      d.close();
    }
  });

  it('close(): a connection waiting, and one whose request line is still being read, are answered 503 SHUTTING_DOWN', async () => {
    const d = new ConnectionDispatcher({ queueMs: 0, retryAfterS: 3, rootPath: '' });
    const port = await d.listen('127.0.0.1', 0);
    const waiting = exchange(port, ['POST /streams HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}'], 600);
    // Its line comes only after close(): the primary is reading it then (no worker runs, so every line is read).
    const reading = exchange(port, ['', 'GET /stream/abc HTTP/1.1\r\nHost: x\r\n\r\n'], 400);
    await new Promise((r) => setTimeout(r, 200));
    expect(d.waiting).to.equal(2);
    d.close();
    for (const { text, reset } of [await waiting, await reading]) {
      expect(reset).to.equal(false);
      expect(text).to.match(/^HTTP\/1\.1 503 /);
      expect(JSON.parse(text.split('\r\n\r\n')[1]!).code).to.equal('SHUTTING_DOWN');
    }
  });
});

describe('the primary refuses new viewers while its workers take connections in too slowly (a host past its knee)', function () {
  this.timeout(20_000);
  // A stand-in for a cluster worker's IPC handle (what the dispatcher sees of a worker): it
  // takes the connection it was sent when the test says so, as a worker's loop turn would.
  class SlowWorker {
    pending: net.Socket | null = null;
    taken = 0;
    constructor(private readonly d: ConnectionDispatcher) {}
    isConnected(): boolean {
      return true;
    }
    send(_msg: unknown, socket: net.Socket, _opts: unknown, cb: (err: Error | null) => void): boolean {
      this.pending = socket;
      cb(null);
      return true;
    }
    take(): void {
      if (!this.pending) return;
      this.pending = null;
      this.taken++;
      this.d.onMessage(this as unknown as Worker, { t: 'conn:taken' });
    }
  }

  /** `n` new viewers at once; resolves with how each was answered: 503 (its body's code) or taken (closed unanswered). */
  function storm(port: number, n: number): Promise<string[]> {
    return Promise.all(Array.from({ length: n }, () => new Promise<string>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => s.write('GET /stream/abc HTTP/1.1\r\nHost: x\r\n\r\n'));
      let text = '';
      s.on('data', (b) => (text += b.toString()));
      s.on('error', () => undefined);
      s.on('close', () => resolve(text.startsWith('HTTP/1.1 503') ? (JSON.parse(text.split('\r\n\r\n')[1]!) as { code: string }).code : 'taken'));
    })));
  }

  it('a backlog the workers take at 5 a second for ADMISSION_QUEUE_MS is answered 503 OVERLOADED at once; at a healthy intake every connection is taken, before and after', async () => {
    const d = new ConnectionDispatcher({ queueMs: 1000, retryAfterS: 5, rootPath: '', minIntakePerS: 30 });
    const port = await d.listen('127.0.0.1', 0);
    const w = new SlowWorker(d);
    d.add(w as unknown as Worker);
    let fast = true;
    const loop = setInterval(() => {
      if (!fast) return;
      for (let k = 0; k < 5 && w.pending; k++) w.take();
    }, 1);
    try {
      // Healthy: up to 5 takes a millisecond; a storm of 60 is taken whole.
      const healthy = await storm(port, 60);
      expect(healthy.filter((x) => x === 'taken').length).to.equal(60);
      expect(d.refused).to.equal(0);

      // Past the knee: 5 a second.
      fast = false;
      const slowTaker = setInterval(() => w.take(), 200);
      const t0 = performance.now();
      const answers = await storm(port, 60);
      const ms = performance.now() - t0;
      clearInterval(slowTaker);
      const refused = answers.filter((x) => x === 'OVERLOADED').length;
      // ~1 s of backlog at 5 a second is taken (more if the box is slow), the rest refused once the second is over.
      expect(refused, answers.join(',')).to.be.at.least(30);
      expect(answers.filter((x) => x === 'taken').length).to.equal(60 - refused);
      expect(ms).to.be.below(5000);

      // Healthy again: after the hold (ADMISSION_QUEUE_MS) new viewers are taken again.
      fast = true;
      await new Promise((r) => setTimeout(r, 1100));
      const after = await storm(port, 20);
      expect(after.filter((x) => x === 'taken').length).to.equal(20);
    } finally {
      clearInterval(loop);
      d.close();
    }
  });

  it('ADMISSION_MIN_INTAKE=0: the same slow intake is waited out, nothing refused', async () => {
    const d = new ConnectionDispatcher({ queueMs: 1000, retryAfterS: 5, rootPath: '', minIntakePerS: 0 });
    const port = await d.listen('127.0.0.1', 0);
    const w = new SlowWorker(d);
    d.add(w as unknown as Worker);
    // 20 a second: a storm of 40 waits ~2 s, twice ADMISSION_QUEUE_MS (the rule at 30 refuses most of it).
    const crawl = setInterval(() => w.take(), 50);
    try {
      const answers = await storm(port, 40);
      expect(answers.filter((x) => x === 'taken').length, answers.join(',')).to.equal(40);
      expect(d.refused).to.equal(0);
    } finally {
      clearInterval(crawl);
      d.close();
    }
  });

  it('one worker slow beside a healthy one: nothing is refused (each worker is judged on its own; the healthy one takes the backlog)', async () => {
    const d = new ConnectionDispatcher({ queueMs: 1000, retryAfterS: 5, rootPath: '', minIntakePerS: 30 });
    const port = await d.listen('127.0.0.1', 0);
    const healthy = new SlowWorker(d);
    const slow = new SlowWorker(d);
    d.add(healthy as unknown as Worker);
    d.add(slow as unknown as Worker);
    // The healthy one at ~50 a second (a storm of 150 waits ~3 s, over ADMISSION_QUEUE_MS): the
    // two together take fewer than 30 a second each on average, each on its own does not.
    const fast = setInterval(() => healthy.take(), 20);
    const crawl = setInterval(() => slow.take(), 200);
    try {
      const answers = await storm(port, 150);
      expect(answers.filter((x) => x === 'taken').length, answers.join(',')).to.equal(150);
      expect(d.refused).to.equal(0);
      expect(healthy.taken).to.be.greaterThan(slow.taken);
    } finally {
      clearInterval(fast);
      clearInterval(crawl);
      d.close();
    }
  });
});
