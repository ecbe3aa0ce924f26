import { expect } from 'chai';
import http from 'node:http';
import { startCluster, type TestCluster } from './support/cluster.js';
import { httpRequest } from './support/http-request.js';
import { makeLiveTs, tsByteRate } from './support/media.js';
import { startOrigin, type Origin } from './support/origin.js';
import { startProxy, type TestProxy } from './support/proxy.js';
import { pidOf, pmtPidOfPat, report } from './support/report.js';
import { openViewer, sleep, waitFor } from './support/ts-viewer.js';
import { startSink, type Sink } from './support/webhook-sink.js';

interface Entry {
  stream: {
    current_url: string; current_failover_index: number; failover_attempts: number; error_count: number;
    last_failover_time: string | null; last_failover_reason: string | null; owner: { worker_id: string } | null;
  };
}

/** A player that keeps every chunk with its arrival time (for seams and gaps). */
interface Recorder {
  status: Promise<number>;
  worker: Promise<string>;
  chunks: Array<{ at: number; buf: Buffer }>;
  body(): Buffer;
  bytes(): number;
  closed(): boolean;
  close(): void;
}

function record(url: string): Recorder {
  const chunks: Array<{ at: number; buf: Buffer }> = [];
  let bytes = 0;
  let closed = false;
  let req: http.ClientRequest;
  const head = new Promise<http.IncomingMessage>((resolve, reject) => {
    req = http.get(url, (res) => {
      resolve(res);
      res.on('data', (b: Buffer) => {
        chunks.push({ at: Date.now(), buf: b });
        bytes += b.length;
      });
      res.on('close', () => (closed = true));
    });
    req.on('error', reject);
  });
  return {
    status: head.then((r) => r.statusCode ?? 0, () => 0),
    worker: head.then((r) => String(r.headers['x-worker-id']), () => ''),
    chunks,
    body: () => Buffer.concat(chunks.map((c) => c.buf)),
    bytes: () => bytes,
    closed: () => closed,
    close: () => req.destroy(),
  };
}

const NULL_PID = 0x1fff;
const discontinuity = (b: Buffer, off: number): boolean => {
  const afc = (b[off + 3]! >> 4) & 0x3;
  return (afc === 2 || afc === 3) && b[off + 4]! > 0 && (b[off + 5]! & 0x80) !== 0;
};

interface Seam {
  /** Packet index of the first packet of the new source (its PAT). */
  start: number;
  /** Arrival times: the last chunk with media of the old source, the new source's PAT. */
  lastOldAt: number;
  firstNewAt: number;
}

/**
 * Finds the seams in a recording by the discontinuity flags the proxy sets after a new
 * source's PAT (the media itself carries none): one per seam on the video pid (the first
 * one flagged), and the new source starts at the nearest PAT before it. (The test media is
 * CBR: it holds null packets of its own, so null packets alone do not mark a seam.)
 */
function seams(rec: Recorder): Seam[] {
  const chunkOf: number[] = []; // packet index -> chunk index
  let carried = 0;
  rec.chunks.forEach((c, ci) => {
    const start = Math.ceil(carried / 188);
    carried += c.buf.length;
    for (let p = start; p * 188 < carried; p++) chunkOf[p] = ci;
  });
  const body = rec.body();
  const n = Math.floor(body.length / 188);
  const out: Seam[] = [];
  let seamPid = -1;
  for (let i = 0; i < n; i++) {
    if (!discontinuity(body, i * 188)) continue;
    if (seamPid < 0) seamPid = pidOf(body, i * 188);
    if (pidOf(body, i * 188) === seamPid) {
      let pat = i;
      while (pat > 0 && pidOf(body, pat * 188) !== 0) pat--;
      // The last chunk before the PAT's that carried anything but null packets.
      let prev = chunkOf[pat]! - 1;
      const onlyNulls = (b: Buffer): boolean => {
        for (let o = 0; o + 188 <= b.length; o += 188) if (pidOf(b, o) !== NULL_PID) return false;
        return b.length >= 188;
      };
      while (prev > 0 && onlyNulls(rec.chunks[prev]!.buf)) prev--;
      out.push({ start: pat, lastOldAt: rec.chunks[Math.max(0, prev)]!.at, firstNewAt: rec.chunks[chunkOf[pat]!]!.at });
    }
  }
  return out;
}

function expectPatPmtAt(body: Buffer, packet: number): void {
  const off = packet * 188;
  expect(pidOf(body, off), 'the new source starts with a PAT').to.equal(0);
  const pmt = pmtPidOfPat(body.subarray(off, off + 188));
  // The PMT comes before any media packet of the new source.
  for (let i = packet + 1; ; i++) {
    const pid = pidOf(body, i * 188);
    if (pid === pmt) break;
    expect([0, NULL_PID, 0x11], `packet ${i - packet} after the PAT is pid ${pid}, not the PMT`).to.include(pid);
  }
}

describe('failover (single worker)', function () {
  this.timeout(60_000);
  let origin: Origin;
  let sink: Sink;
  let proxy: TestProxy;
  let rate: number;

  before(async () => {
    origin = await startOrigin();
    sink = await startSink();
    rate = await tsByteRate(await makeLiveTs());
    // The origin makes its silent and video-less variants on first use: before the proxy asks.
    for (const path of ['/silent/warm.ts', '/novideo/warm.ts']) {
      const v = openViewer(origin.url(path));
      await v.firstBytes(188);
      v.close();
    }
    proxy = await startProxy({
      SHARED_STREAM_GRACE: '1',
      STREAM_RETRY_ATTEMPTS: '1',
      STREAM_RETRY_DELAY: '0.1',
      LIVE_CHUNK_TIMEOUT_SECONDS: '1.5',
      DEFAULT_CONNECTION_TIMEOUT: '2',
      ENABLE_BITRATE_MONITORING: 'true',
      MIN_BITRATE_THRESHOLD: String(Math.round(rate / 4)),
      BITRATE_CHECK_INTERVAL: '0.5',
      BITRATE_FAILOVER_THRESHOLD: '2',
      BITRATE_MONITORING_GRACE_PERIOD: '3', // after a stall's chunk timeout (0.8 + 1.5 s) below
    });
    const reg = await fetch(proxy.url('/webhooks'), {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ url: sink.url('/ok/fo'), events: ['failover_triggered', 'stream_failed'], retry_attempts: 0 }),
    });
    expect(reg.status).to.equal(200);
  });
  after(async () => {
    await proxy.close();
    await sink.close();
    await origin.close();
  });

  const create = async (url: string, extra: Record<string, unknown> = {}): Promise<string> => {
    const res = await fetch(proxy.url('/streams'), {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ url, metadata: { id: 77 }, ...extra }),
    });
    expect(res.status).to.equal(200);
    return ((await res.json()) as { stream_id: string }).stream_id;
  };
  const entry = async (id: string): Promise<Entry['stream']> =>
    ((await (await fetch(proxy.url(`/streams/${id}`))).json()) as Entry).stream;
  const failovers = (id: string) => sink.events('/ok/fo', 'failover_triggered').filter((e) => e.stream_id === id);

  const triggers: Array<[string, string, string]> = [
    ['a refused connection (after the same-URL retry)', 'connect_error', 'http://127.0.0.1:9/refused.ts'],
    ['an HTTP 404 (after the same-URL retry)', 'http_error', '/status/404'],
    ['an HTML page with a 200', 'not_media', '/html.ts'],
    ['headers then no data for LIVE_CHUNK_TIMEOUT_SECONDS', 'chunk_timeout', '/stall.ts'],
    ['a clean close right after connecting', 'silent_close', '/close-after.ts?bytes=18800'],
    ['a bitrate under MIN_BITRATE_THRESHOLD', 'low_bitrate', '/live/slow.ts?speed=0.05'],
  ];
  for (const [name, reason, target] of triggers) {
    it(`${name} → exactly one advance, reason ${reason}`, async () => {
      const primary = target.startsWith('http') ? target : origin.url(target);
      const backup = origin.url(`/live/backup-${reason}.ts`);
      const id = await create(primary, { failover_urls: [backup] });
      const v = openViewer(proxy.url(`/stream/${id}`));
      try {
        expect(await v.status).to.equal(200);
        await waitFor(() => origin.openConnections(`/live/backup-${reason}.ts`) === 1, 15_000, 'the backup to be opened');
        await waitFor(() => failovers(id).length > 0, 5000, 'failover_triggered at the sink');
        await sleep(300);
        const events = failovers(id);
        expect(events.map((e) => e.data.reason)).to.deep.equal([reason]);
        expect(events[0]!.data).to.include({ old_url: primary, new_url: backup, failover_index: 0, attempt_number: 1 });
        expect(events[0]!.data.metadata).to.deep.equal({ id: '77' });
        const e = await entry(id);
        expect(e).to.include({ current_url: backup, current_failover_index: 0, failover_attempts: 1, last_failover_reason: reason });
        expect(e.error_count).to.be.at.least(1);
        expect(e.last_failover_time).to.match(/Z$/);
        const mark = v.bytes();
        await waitFor(() => v.bytes() - mark > 188 * 200, 5000, 'media from the backup');
        expect(v.misaligned()).to.equal(0);
        if (!target.startsWith('http') && !target.startsWith('/status')) {
          expect(origin.openConnections(target), 'the primary is closed').to.equal(0);
        }
      } finally {
        v.close();
      }
    });
  }

  const SILENCE = {
    enable_silence_detection: true, silence_threshold_db: -50, silence_duration: 1,
    silence_check_interval: 0.5, silence_failover_threshold: 2, silence_monitoring_grace_period: 1,
  };

  it('silent audio (FFmpeg silencedetect beside the fan-out) → one advance, reason silence; a stream with sound stays', async () => {
    const silent = await create(origin.url('/silent/primary.ts'), { ...SILENCE, failover_urls: [origin.url('/live/after-silence.ts')] });
    const sound = await create(origin.url('/live/with-sound.ts'), { ...SILENCE, failover_urls: [origin.url('/live/never.ts')] });
    const a = openViewer(proxy.url(`/stream/${silent}`));
    const b = openViewer(proxy.url(`/stream/${sound}`));
    try {
      expect(await a.status).to.equal(200);
      expect(await b.status).to.equal(200);
      await origin.waitForOpen('/live/after-silence.ts', 1, 20_000);
      await sleep(2000); // the stream with sound had as long as the silent one, and more
      expect(failovers(silent).map((e) => e.data.reason)).to.deep.equal(['silence']);
      expect(failovers(sound)).to.have.length(0);
      expect(origin.totalRequests('/live/never.ts')).to.equal(0);
      const mark = a.bytes();
      await waitFor(() => a.bytes() - mark > 188 * 200, 5000, 'media from the backup');
      expect(a.misaligned()).to.equal(0);
    } finally {
      a.close();
      b.close();
    }
  });

  it('a programme without video → one advance, reason missing_track', async () => {
    const id = await create(origin.url('/novideo/primary.ts'), { ...SILENCE, failover_urls: [origin.url('/live/with-video.ts')] });
    const v = openViewer(proxy.url(`/stream/${id}`));
    try {
      expect(await v.status).to.equal(200);
      await origin.waitForOpen('/live/with-video.ts', 1, 20_000);
      await sleep(1500);
      expect(failovers(id).map((e) => e.data.reason)).to.deep.equal(['missing_track']);
      expect(v.isClosed()).to.equal(false);
    } finally {
      v.close();
    }
  });

  it('a primary that sends data then goes silent: 1 + STREAM_RETRY_ATTEMPTS connections, then the backup (silence does not reset the budget)', async () => {
    const id = await create(origin.url('/live/silent-primary.ts?stall_ms=800'), { failover_urls: [origin.url('/live/silent-backup.ts')] });
    const v = record(proxy.url(`/stream/${id}`));
    try {
      expect(await v.status).to.equal(200);
      await waitFor(() => origin.openConnections('/live/silent-backup.ts') === 1, 15_000, 'the backup');
      expect(origin.totalRequests('/live/silent-primary.ts')).to.equal(2);
      expect(failovers(id).map((e) => e.data.reason)).to.deep.equal(['chunk_timeout']);
      await waitFor(() => seams(v).length >= 2, 5000, 'two seams (retry, backup)');
      const body = v.body();
      expect(body.length % 188).to.equal(0);
      for (const s of seams(v)) expectPatPmtAt(body, s.start);
      // The proxy's keep-alive: chunks of 7 null packets while the upstream sends nothing.
      const keepAlives = v.chunks.filter((c) => c.buf.length === 188 * 7 && pidOf(c.buf, 0) === NULL_PID);
      expect(keepAlives.length, 'null packets while no data flows').to.be.greaterThan(0);
      // Null packets within 1 s of the last data: no hole in the arrivals longer than that.
      let maxHole = 0;
      for (let i = 1; i < v.chunks.length; i++) maxHole = Math.max(maxHole, v.chunks[i]!.at - v.chunks[i - 1]!.at);
      report('longest time without any packet at the viewer during a stall (ms)', maxHole);
      expect(maxHole).to.be.below(1000);
    } finally {
      v.close();
    }
  });

  it('a provider that rotates its connection every 2.5 s, each with data: the viewer stays, no failover', async () => {
    const id = await create(origin.url('/live/rotating.ts?close_ms=2500'), { failover_urls: [origin.url('/live/rotating-backup.ts')] });
    const v = openViewer(proxy.url(`/stream/${id}`));
    try {
      expect(await v.status).to.equal(200);
      await waitFor(() => origin.totalRequests('/live/rotating.ts') >= 5, 20_000, '5 rotations');
      expect(v.isClosed()).to.equal(false);
      expect(origin.totalRequests('/live/rotating-backup.ts')).to.equal(0);
      expect(failovers(id)).to.have.length(0);
      expect(v.misaligned()).to.equal(0);
    } finally {
      v.close();
    }
  });

  it('a clean close mid-play switches at once; the measured TS failover gap', async () => {
    // A burst then a close: a provider at its connection limit (a long run would be a rotation).
    const id2 = await create(`${origin.url('/close-after.ts')}?bytes=${188 * 3000}&gap`, { failover_urls: [origin.url('/live/gap-backup2.ts')] });
    const v = record(proxy.url(`/stream/${id2}`));
    try {
      expect(await v.status).to.equal(200);
      await waitFor(() => seams(v).length >= 1, 10_000, 'the seam to the backup');
      const [seam] = seams(v);
      expectPatPmtAt(v.body(), seam!.start);
      report('TS failover gap at the viewer, last primary packet → first backup packet (ms)', seam!.firstNewAt - seam!.lastOldAt);
      expect(failovers(id2).map((e) => e.data.reason)).to.deep.equal(['silent_close']);
    } finally {
      v.close();
    }
  });

  it('resolver: the §5.2 body, next_url honoured; null at the next failure ends in stream_failed', async () => {
    const resolved = origin.url('/live/resolved.ts');
    sink.resolveNext({ body: { next_url: resolved } });
    const id = await create(origin.url('/status/404'), { failover_resolver_url: sink.url('/resolver/a'), metadata: { id: 78, provider_profile_id: 5 } });
    const v = openViewer(proxy.url(`/stream/${id}`));
    try {
      expect(await v.status).to.equal(200);
      await waitFor(() => origin.openConnections('/live/resolved.ts') === 1, 10_000, 'the resolved URL');
      const calls = sink.on('/resolver/a');
      expect(calls).to.have.length(1);
      expect(calls[0]!.body).to.deep.equal({
        current_url: origin.url('/status/404'), metadata: { id: '78', provider_profile_id: '5' },
        current_failover_index: -1, status_code: 404, reason: 'http_error',
      });
      expect(await entry(id)).to.include({ current_url: resolved, current_failover_index: 0 });
      // Manual failover asks the resolver again; its null means no further source: the stream stays.
      const res = await fetch(proxy.url(`/streams/${id}/failover`), { method: 'POST' });
      const body = (await res.json()) as { new_url: string; failover_index: number };
      expect(body).to.include({ new_url: resolved, failover_index: 0 });
      expect(sink.on('/resolver/a')).to.have.length(2);
      expect(sink.on('/resolver/a')[1]!.body).to.include({ current_url: resolved, current_failover_index: 0, reason: 'manual' });
      expect(v.isClosed()).to.equal(false);
    } finally {
      v.close();
    }
    // A resolver answering null (or failing) at once: 502 for the viewer, stream_failed at the sink.
    const dead = await create(origin.url('/status/410'), { failover_resolver_url: sink.url('/resolver/b') });
    const res = await fetch(proxy.url(`/stream/${dead}`));
    expect(res.status).to.equal(502);
    await sink.waitFor('stream_failed', () => sink.events('/ok/fo', 'stream_failed').some((e) => e.stream_id === dead));
    const failed = sink.events('/ok/fo', 'stream_failed').filter((e) => e.stream_id === dead);
    expect(failed).to.have.length(1);
    expect(failed[0]!.data).to.include({ reason: 'http_error', retry_count: 2 });
    expect(sink.on('/resolver/b')).to.have.length(1);
  });

  it('after the list is exhausted, viewers stay and the primary is tried again after a back-off', async () => {
    const primary = `${origin.url('/close-after.ts')}?bytes=${188 * 2000}&exhaust`;
    const id = await create(primary, { failover_urls: [origin.url('/status/503')] });
    const v = openViewer(proxy.url(`/stream/${id}`));
    try {
      expect(await v.status).to.equal(200);
      await waitFor(() => failovers(id).some((e) => e.data.reason === 'primary_retry'), 15_000, 'a retry of the primary');
      expect(v.isClosed()).to.equal(false);
      const back = failovers(id).find((e) => e.data.reason === 'primary_retry')!;
      expect(back.data).to.include({ new_url: primary, failover_index: -1 });
      await waitFor(() => v.bytes() >= 2 * 188 * 1900, 10_000, "the primary's bytes again");
      expect(v.misaligned()).to.equal(0);
    } finally {
      v.close();
    }
  });

  it('re-POSTing a running stream with failover_urls and headers reaches its running source', async () => {
    const url = origin.url('/live/repost.ts');
    const id = await create(url);
    const v = openViewer(proxy.url(`/stream/${id}`));
    try {
      await v.firstBytes(188 * 50);
      const none = await fetch(proxy.url(`/streams/${id}/failover`), { method: 'POST' });
      expect(none.status).to.equal(400); // NO_FAILOVER: nothing to switch to yet
      await create(url, { failover_urls: [origin.url('/live/repost-b.ts')], headers: { 'X-Token': 'two' } });
      await sleep(200);
      const res = await fetch(proxy.url(`/streams/${id}/failover`), { method: 'POST' });
      expect(res.status).to.equal(200);
      expect(await res.json()).to.include({ new_url: origin.url('/live/repost-b.ts'), failover_index: 0, failover_attempts: 1 });
      await origin.waitForOpen('/live/repost-b.ts', 1, 5000);
      expect(origin.lastHeaders('/live/repost-b.ts')?.['x-token']).to.equal('two');
      expect(v.isClosed()).to.equal(false);
    } finally {
      v.close();
    }
  });
});

describe('failover across workers (WORKERS=2)', function () {
  this.timeout(90_000);
  let origin: Origin;
  let cluster: TestCluster;

  before(async () => {
    origin = await startOrigin();
    cluster = await startCluster({
      WORKERS: '2', SHARED_STREAM_GRACE: '1', LEASE_TTL_MS: '2000',
      STREAM_RETRY_ATTEMPTS: '1', STREAM_RETRY_DELAY: '0.1', LIVE_CHUNK_TIMEOUT_SECONDS: '1.5',
      HEARTBEAT_INTERVAL: '2', CLEANUP_INTERVAL: '5', // no sweep of a worker slowed by the box's load
      VIEWER_HANDOFF: 'false', // viewers on both workers are the point: none moves to the owner
    }, 60_000); // a loaded box starts workers slowly
  });
  after(async () => {
    await cluster?.stop();
    await origin.close();
  });

  const create = async (url: string, failover: string[]): Promise<string> =>
    (await cluster.api<{ stream_id: string }>('/streams', { method: 'POST', body: JSON.stringify({ url, failover_urls: failover, metadata: { id: 1 } }) })).body.stream_id;

  const onBothWorkers = async (id: string, n: number): Promise<Recorder[]> => {
    const viewers = Array.from({ length: n }, () => record(cluster.url(`/stream/${id}`)));
    expect(await Promise.all(viewers.map((v) => v.status))).to.deep.equal(Array(n).fill(200));
    expect(new Set(await Promise.all(viewers.map((v) => v.worker))).size).to.equal(2);
    return viewers;
  };

  it('a primary that dies mid-play switches to the backup: every viewer on both workers stays, aligned, PAT/PMT first', async () => {
    const id = await create(origin.url('/live/c-primary.ts?stall_ms=1500'), [origin.url('/live/c-backup.ts')]);
    const viewers = await onBothWorkers(id, 4);
    try {
      await origin.waitForOpen('/live/c-backup.ts', 1, 20_000);
      await waitFor(() => viewers.every((v) => seams(v).length >= 2), 10_000, 'every viewer past both seams');
      for (const v of viewers) {
        expect(v.closed()).to.equal(false);
        const body = v.body();
        expect(body.length % 188).to.equal(0);
        for (let i = 0; i < body.length; i += 188) expect(body[i]).to.equal(0x47);
        for (const s of seams(v)) expectPatPmtAt(body, s.start);
      }
      expect(origin.totalRequests('/live/c-primary.ts')).to.equal(2);
      expect(origin.totalRequests('/live/c-backup.ts')).to.equal(1);
    } finally {
      viewers.forEach((v) => v.close());
    }
  });

  it('POST /streams/{id}/failover on any worker acts on the owner once; /streams/{id} shows the owner state on every worker', async () => {
    const b = origin.url('/live/m-b.ts');
    const c = origin.url('/live/m-c.ts');
    const id = await create(origin.url('/live/m-a.ts'), [b, c]);
    const viewers = await onBothWorkers(id, 2);
    try {
      await waitFor(() => viewers.every((v) => v.bytes() > 188 * 100), 10_000, 'playback');
      const answers: Array<{ w: string; body: { new_url: string; failover_index: number; failover_attempts: number; message: string } }> = [];
      for (let i = 0; i < 3; i++) {
        // A fresh connection per call: the cluster hands connections to workers in turn.
        const res = await httpRequest(cluster.url(`/streams/${id}/failover`), { method: 'POST' });
        answers.push({ w: String(res.headers['x-worker-id']), body: JSON.parse(res.body.toString('utf8')) as never });
      }
      expect(new Set(answers.map((a) => a.w)).size, 'answered by both workers').to.equal(2);
      expect(answers.map((a) => [a.body.new_url, a.body.failover_index, a.body.failover_attempts])).to.deep.equal([
        [b, 0, 1], [c, 1, 2], [c, 1, 2],
      ]);
      expect(answers[2]!.body.message).to.match(/No further/);
      await origin.waitForOpen('/live/m-c.ts', 1, 5000);
      await origin.waitForClosedAll('/live/m-b.ts', 5000);
      for (let i = 0; i < 6; i++) {
        const { body } = await cluster.api<Entry>(`/streams/${id}`);
        expect(body.stream).to.include({ current_url: c, current_failover_index: 1, failover_attempts: 2, last_failover_reason: 'manual' });
      }
      for (const v of viewers) expect(v.closed()).to.equal(false);
    } finally {
      viewers.forEach((v) => v.close());
    }
  });
});

describe('failover of a live transcode', function () {
  this.timeout(120_000);
  let origin: Origin;
  let proxy: TestProxy;

  before(async () => {
    origin = await startOrigin();
    proxy = await startProxy({ SHARED_STREAM_GRACE: '1', STREAM_RETRY_ATTEMPTS: '1', STREAM_RETRY_DELAY: '0.2' });
  });
  after(async () => {
    await proxy.close();
    await origin.close();
  });

  const transcode = async (url: string, failover: string[] = []): Promise<string> => {
    const res = await fetch(proxy.url('/transcode'), {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ url, failover_urls: failover, profile: '-i {input_url} -c:v libx264 -preset ultrafast -g 25 -c:a aac {output_args}' }),
    });
    expect(res.status, await res.clone().text()).to.equal(200);
    return ((await res.json()) as { stream_id: string }).stream_id;
  };

  it('an input that closes cleanly every 4 s: FFmpeg restarts under the same key again and again, the viewer stays; the measured transcode gap', async () => {
    const id = await transcode(origin.url('/live/tc-close.ts?close_ms=4000'));
    const v = record(proxy.url(`/stream/${id}`));
    try {
      expect(await v.status).to.equal(200);
      // More restarts than STREAM_RETRY_ATTEMPTS (1): each run that delivered earns them back.
      await waitFor(() => seams(v).length >= 2, 80_000, 'FFmpeg restarted twice');
      const [seam] = seams(v);
      expectPatPmtAt(v.body(), seam!.start);
      report('transcode failover gap at the viewer, last packet of the old FFmpeg → first of the new (ms)', seam!.firstNewAt - seam!.lastOldAt);
      expect(v.closed()).to.equal(false);
      expect(origin.totalRequests('/live/tc-close.ts')).to.be.at.least(3);
      expect(proxy.worker.engine.ownedSources()).to.have.length(1);
    } finally {
      v.close();
    }
  });

  it('an input that fails: ffmpeg_input_error moves the transcode to the next failover URL', async () => {
    const id = await transcode(origin.url('/status/404?tc'), [origin.url('/live/tc-backup.ts')]);
    const v = openViewer(proxy.url(`/stream/${id}`));
    try {
      expect(await v.status).to.equal(200);
      await origin.waitForOpen('/live/tc-backup.ts', 1, 20_000);
      const e = ((await (await fetch(proxy.url(`/streams/${id}`))).json()) as Entry).stream;
      expect(e).to.include({ current_url: origin.url('/live/tc-backup.ts'), current_failover_index: 0, last_failover_reason: 'ffmpeg_input_error' });
    } finally {
      v.close();
    }
  });
});
