import { expect } from 'chai';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { isAlive, startCluster, type TestCluster } from './support/cluster.js';
import { startOrigin, type Origin } from './support/origin.js';
import { report } from './support/report.js';
import { sample } from './support/sampler.js';
import { openViewer, sleep, waitFor, type TsViewer } from './support/ts-viewer.js';

const execFileAsync = promisify(execFile);

// Cheap templates: a remux for counting processes, a tiny encode where the output matters.
const COPY = '-i {input_url} -c copy {output_args}';
const ENCODE = '-i {input_url} -c:v libx264 -preset ultrafast -tune zerolatency -s 160x120 -g 25 -c:a aac -b:a 48k {output_args}';

/** FFmpeg processes on this machine whose arguments name `marker` (an origin path). */
function ffmpegPids(marker: string): number[] {
  const out = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
  return out.split('\n').filter((l) => /\bffmpeg\b/.test(l) && l.includes(marker)).map((l) => Number(l.trim().split(/\s+/)[0]));
}

async function transcode(cluster: TestCluster, url: string, profile: string, extra: Record<string, unknown> = {}) {
  const res = await cluster.api<{ stream_id: string; code?: string; detail?: string; ffmpeg_args: string[] }>('/transcode', {
    method: 'POST', body: JSON.stringify({ url, profile, ...extra }),
  });
  return res;
}

async function createTranscode(cluster: TestCluster, url: string, profile = COPY): Promise<string> {
  const res = await transcode(cluster, url, profile);
  expect(res.status, JSON.stringify(res.body)).to.equal(200);
  return res.body.stream_id;
}

const workerOf = async (v: TsViewer): Promise<string> => String((await v.headers)['x-worker-id']);
const closeAll = (vs: TsViewer[]): void => vs.forEach((v) => v.close());

describe('transcoding', function () {
  this.timeout(120_000);
  let origin: Origin;
  let shared: TestCluster;

  before(async () => {
    origin = await startOrigin();
    shared = await startCluster({ WORKERS: '2', SHARED_STREAM_GRACE: '1', LEASE_TTL_MS: '2000' });
  });
  after(async () => {
    await shared?.stop();
    await origin.close();
    expect(ffmpegPids('/live/tx-'), 'no FFmpeg left behind').to.deep.equal([]);
  });

  it('10 viewers over 2 workers share 1 FFmpeg; every viewer gets valid MPEG-TS with video and audio', async () => {
    const marker = '/live/tx-shared.ts';
    const id = await createTranscode(shared, origin.url(marker), ENCODE);
    const viewers = Array.from({ length: 10 }, () => openViewer(shared.url(`/stream/${id}`), { keepBody: true }));
    try {
      expect(await Promise.all(viewers.map((v) => v.status))).to.deep.equal(Array(10).fill(200));
      expect(new Set(await Promise.all(viewers.map(workerOf))).size).to.equal(2);
      await waitFor(() => viewers.every((v) => v.bytes() > 150_000), 30_000, 'every viewer to get 150 KB');
      expect(ffmpegPids(marker)).to.have.length(1);
      expect(origin.totalRequests(marker)).to.equal(1);
      for (const v of viewers) {
        expect((await v.firstBytes(1))[0]).to.equal(0x47);
        expect(v.misaligned()).to.equal(0);
      }
      const dir = await mkdtemp(path.join(os.tmpdir(), 'tx-'));
      try {
        const file = path.join(dir, 'viewer.ts');
        await writeFile(file, viewers[9]!.body());
        const { stdout } = await execFileAsync('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_type', '-of', 'csv=p=0', file]);
        // ffprobe lists each stream under its programme too: compare the set of types.
        expect([...new Set(stdout.split('\n').filter(Boolean))].sort()).to.deep.equal(['audio', 'video']);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
      const entry = await shared.api<{ stream: { stream_type: string; source_pid: number | null; transcode: unknown; metadata: Record<string, string> } }>(`/streams/${id}`);
      expect(entry.body.stream.stream_type).to.equal('Transcoding');
      expect(entry.body.stream.metadata.transcoding).to.equal('true');
      report('FFmpeg processes for 10 viewers on 2 workers (pooled)', ffmpegPids(marker).length);
    } finally {
      closeAll(viewers);
    }
  });

  it('the last viewer leaves: no FFmpeg for that stream after grace + margin', async () => {
    const marker = '/live/tx-leave.ts';
    const id = await createTranscode(shared, origin.url(marker));
    const v = openViewer(shared.url(`/stream/${id}`));
    await v.firstBytes(188 * 10);
    expect(ffmpegPids(marker)).to.have.length(1);
    v.close();
    const t0 = Date.now();
    await waitFor(() => ffmpegPids(marker).length === 0, 8000, 'FFmpeg to stop');
    report('FFmpeg gone after the last viewer left (ms, grace 1000)', Date.now() - t0);
    await origin.waitForClosedAll(marker, 3000);
  });

  it('url_profile: two different templates on one URL are two FFmpeg processes', async () => {
    const marker = '/live/tx-profiles.ts';
    const a = await createTranscode(shared, origin.url(marker), COPY);
    const b = await createTranscode(shared, origin.url(marker), `${COPY.replace('-c copy', '-c copy -copyts')}`);
    expect(a).to.not.equal(b);
    const viewers = [openViewer(shared.url(`/stream/${a}`)), openViewer(shared.url(`/stream/${b}`))];
    try {
      await Promise.all(viewers.map((v) => v.firstBytes(188)));
      expect(ffmpegPids(marker)).to.have.length(2);
    } finally {
      closeAll(viewers);
    }
  });

  it('SIGKILL of the worker that owns the FFmpeg: its FFmpeg is gone, viewers elsewhere get media from a new one', async () => {
    const marker = '/live/tx-takeover.ts';
    const id = await createTranscode(shared, origin.url(marker));
    const viewers = Array.from({ length: 6 }, () => openViewer(shared.url(`/stream/${id}`)));
    try {
      await waitFor(() => viewers.every((v) => v.bytes() > 188 * 100), 20_000, 'every viewer to play');
      const [oldFfmpeg] = ffmpegPids(marker);
      const owner = (await shared.api<{ stream: { owner: { worker_id: string; pid: number } } }>(`/streams/${id}`)).body.stream.owner;
      const survivors: TsViewer[] = [];
      for (const v of viewers) if ((await workerOf(v)) !== owner.worker_id) survivors.push(v);
      expect(survivors.length).to.be.greaterThan(0);
      process.kill(owner.pid, 'SIGKILL');
      await waitFor(() => !isAlive(oldFfmpeg!), 5000, 'the dead worker’s FFmpeg to be gone');
      const marks = survivors.map((v) => v.bytes());
      await waitFor(() => survivors.every((v, i) => v.bytes() - marks[i]! > 50_000), 20_000, 'media from the new FFmpeg');
      const now = ffmpegPids(marker);
      expect(now).to.have.length(1);
      expect(now[0]).to.not.equal(oldFfmpeg);
      for (const v of survivors) expect(v.isClosed()).to.equal(false);
    } finally {
      closeAll(viewers);
    }
    await waitFor(async () => (await shared.api<{ total: number }>('/workers')).body.total === 2, 15_000, 'the worker to come back');
  });

  it('bad templates and profiles are a 400 with a clear message', async () => {
    const url = origin.url('/live/tx-bad.ts');
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ['-i {input_url} -c copy -f mpegts /tmp/out.ts', {}, 'TEMPLATE_INVALID'],
      ['-i {input_url} -i /etc/passwd -c copy {output_args}', {}, 'TEMPLATE_INVALID'],
      ['-i {input_url} -vf "scale=1:1 {output_args}', {}, 'TEMPLATE_INVALID'],
      ['-i {input_url} -b:v {bitrate} {output_args}', {}, 'TEMPLATE_INVALID'],
      ['no-such-profile', {}, 'PROFILE_NOT_FOUND'],
      ['default', { profile_variables: { input_url: 'http://evil/' } }, 'TEMPLATE_INVALID'],
    ];
    for (const [profile, extra, code] of cases) {
      const res = await transcode(shared, url, profile, extra);
      expect(res.status, profile).to.equal(400);
      expect(res.body.code, profile).to.equal(code);
      expect(res.body.detail).to.be.a('string').and.not.empty;
    }
    const missing = await transcode(shared, url, 'no-such-profile');
    expect(missing.body.detail).to.include('default');
  });

  it('a quoted filter argument renders to a clean argv', async () => {
    const res = await transcode(shared, origin.url('/live/tx-quote.ts'), '-i {input_url} -vf "scale=160:120,drawtext=text=\'Hi there\'" -c:a copy {output_args}');
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    // The double quotes are shell-like grouping and go; the single quotes are ffmpeg's own
    // filter escaping and must stay (a text with ',' or ':' would break without them).
    expect(res.body.ffmpeg_args).to.include("scale=160:120,drawtext=text='Hi there'");
    for (const t of res.body.ffmpeg_args) expect(t).to.not.match(/^"|"$/);
  });

  it('lists the built-in profiles and the detected acceleration', async () => {
    const res = await shared.api<{ profiles: Array<{ name: string }>; hardware_acceleration: { type: string } }>('/transcode/profiles');
    expect(res.body.profiles.map((p) => p.name)).to.include.members(['default', 'hq', 'lowlatency', '720p', '1080p', 'hevc', 'audio']);
    expect(res.body.hardware_acceleration.type).to.equal('cpu');
  });
});

describe('transcoding models', function () {
  this.timeout(120_000);
  let origin: Origin;
  before(async () => (origin = await startOrigin()));
  after(async () => {
    await origin.close();
    expect(ffmpegPids('/live/tm-'), 'no FFmpeg left behind').to.deep.equal([]);
  });

  async function withCluster(env: Record<string, string>, fn: (c: TestCluster) => Promise<void>): Promise<void> {
    const c = await startCluster({ WORKERS: '2', SHARED_STREAM_GRACE: '1', ...env });
    try {
      await fn(c);
    } finally {
      expect(await c.stop()).to.equal(0);
    }
  }

  it('pooling off: one FFmpeg per viewer (10 viewers → 10 processes)', async () => {
    await withCluster({ ENABLE_TRANSCODING_POOLING: 'false' }, async (c) => {
      const marker = '/live/tm-individual.ts';
      const id = await createTranscode(c, origin.url(marker));
      const viewers = Array.from({ length: 10 }, () => openViewer(c.url(`/stream/${id}`)));
      try {
        await waitFor(() => viewers.every((v) => v.bytes() > 188 * 10), 30_000, 'every viewer to play');
        expect(ffmpegPids(marker)).to.have.length(10);
        report('FFmpeg processes for 10 viewers, pooling off', ffmpegPids(marker).length);
      } finally {
        closeAll(viewers);
      }
      await waitFor(() => ffmpegPids(marker).length === 0, 8000, 'every FFmpeg to stop');
    });
  });

  it('MAX_CLIENTS_PER_SHARED_STREAM=3 with 7 viewers → 3 processes', async () => {
    await withCluster({ MAX_CLIENTS_PER_SHARED_STREAM: '3' }, async (c) => {
      const marker = '/live/tm-slots.ts';
      const id = await createTranscode(c, origin.url(marker));
      const viewers: TsViewer[] = [];
      try {
        for (let i = 0; i < 7; i++) {
          const v = openViewer(c.url(`/stream/${id}`));
          viewers.push(v);
          expect(await v.status).to.equal(200);
        }
        await waitFor(() => viewers.every((v) => v.bytes() > 188 * 10), 30_000, 'every viewer to play');
        expect(ffmpegPids(marker)).to.have.length(3);
        const pooled = await c.api<{ total_streams: number; streams: Array<{ slot: number; pid: number | null; client_count: number }> }>('/stats/pooled');
        expect(pooled.body.streams.map((s) => s.slot).sort()).to.deep.equal([1, 2, 3]);
        expect(pooled.body.streams.map((s) => s.client_count).sort()).to.deep.equal([1, 3, 3]);
        for (const s of pooled.body.streams) expect(s.pid).to.be.a('number');
      } finally {
        closeAll(viewers);
      }
    });
  });

  it('url_only: two different templates on one URL share one FFmpeg', async () => {
    await withCluster({ STREAM_SHARING_STRATEGY: 'url_only' }, async (c) => {
      const marker = '/live/tm-urlonly.ts';
      const a = await createTranscode(c, origin.url(marker), COPY);
      const b = await createTranscode(c, origin.url(marker), COPY.replace('-c copy', '-c copy -copyts'));
      const viewers = [openViewer(c.url(`/stream/${a}`)), openViewer(c.url(`/stream/${b}`))];
      try {
        await Promise.all(viewers.map((v) => v.firstBytes(188 * 10)));
        expect(ffmpegPids(marker)).to.have.length(1);
      } finally {
        closeAll(viewers);
      }
    });
  });

  it('SIGTERM to the service leaves no FFmpeg behind', async () => {
    const marker = '/live/tm-sigterm.ts';
    const c = await startCluster({ WORKERS: '2', DRAIN_TIMEOUT: '1' });
    const id = await createTranscode(c, origin.url(marker));
    const v = openViewer(c.url(`/stream/${id}`));
    await v.firstBytes(188);
    expect(ffmpegPids(marker)).to.have.length(1);
    expect(await c.stop()).to.equal(0);
    await sleep(200);
    expect(ffmpegPids(marker)).to.deep.equal([]);
  });

  it('a stopped FFmpeg slow to exit keeps the lease until it has exited: the next viewer\'s FFmpeg never runs beside it', async () => {
    // FFmpeg may take seconds to finish after SIGTERM (flushing, a slow network output). A
    // wrapper that waits 2 s on SIGTERM before passing it on stands in for one.
    const dir = await mkdtemp(path.join(os.tmpdir(), 'slow-exit-'));
    const wrapper = path.join(dir, 'slow-exit'); // not named ffmpeg: ffmpegPids counts the real one
    await writeFile(wrapper, '#!/bin/sh\nffmpeg "$@" &\nchild=$!\ntrap \'sleep 2; kill -TERM $child; wait $child; exit 0\' TERM\nwait $child\n', { mode: 0o755 });
    const marker = '/live/tm-slow-exit.ts';
    const c = await startCluster({ WORKERS: '1', SHARED_STREAM_GRACE: '0', FFMPEG_PATH: wrapper });
    const ffmpeg = sample(() => ffmpegPids(marker).length, 100);
    try {
      // A short probe: the test origin's stream otherwise takes FFmpeg's whole 5 s analyzeduration.
      const id = await createTranscode(c, origin.url(marker), `-analyzeduration 500000 ${COPY}`);
      const first = openViewer(c.url(`/stream/${id}`));
      await first.firstBytes(188 * 10);
      const closedBefore = c.logs.filter((l) => l.message === 'live session closed').length;
      first.close();
      // The session ends (no grace) and its FFmpeg is told to stop; a viewer comes meanwhile.
      await waitFor(() => c.logs.filter((l) => l.message === 'live session closed').length > closedBefore, 10_000, 'the session to close');
      expect(ffmpegPids(marker), 'the old FFmpeg still exiting').to.have.length(1);
      const next = openViewer(c.url(`/stream/${id}`));
      try {
        await next.firstBytes(188 * 10);
        expect(ffmpegPids(marker)).to.have.length(1);
      } finally {
        next.close();
      }
    } finally {
      expect(ffmpeg.stop(), 'FFmpeg processes at the same instant').to.equal(1);
      expect(await c.stop()).to.equal(0);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
