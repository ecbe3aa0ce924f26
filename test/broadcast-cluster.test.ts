// BROADCAST.md §8 against the real product with WORKERS=2: m3u-editor's Networks end to end.
// A local origin serves lavfi-made programmes; a fake editor receives the callbacks and
// starts the next programme inside its handler, slowly, as the real one does. A player
// (ffprobe / ffmpeg) reads the playlist through the worker that does NOT own the network.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, utimes, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { apiCall } from './support/api-call.js';
import { makeProgrammes, startFakeEditor, until, type FakeEditor, type ProgrammeMedia } from './support/broadcast-editor.js';
import { isAlive, startCluster, type TestCluster } from './support/cluster.js';
import { startOrigin, type Origin } from './support/origin.js';

const exec = promisify(execFile);
const TOKEN = 't';
const SEG = 2;

interface Answer<T = Record<string, unknown>> {
  status: number;
  worker: string | null;
  body: T;
  headers: Headers;
}

function playlistNumbers(text: unknown): number[] {
  if (typeof text !== 'string') return [];
  return text.split('\n').map((l) => /^live(\d+)\.ts$/.exec(l.trim())).filter((m) => m !== null).map((m) => Number(m![1]));
}

function mediaSequence(text: unknown): number {
  if (typeof text !== 'string') return NaN;
  return Number(/#EXT-X-MEDIA-SEQUENCE:(\d+)/.exec(text)?.[1] ?? NaN);
}

/**
 * A player's door to one worker: forwards each request to the cluster on a fresh connection
 * and retries while the answer comes from `avoid` (the owner), so everything the player gets
 * was served by the other worker. Counts what it forwarded.
 */
async function pinnedTo(cluster: TestCluster, avoid: () => string) {
  let served = 0;
  const server = http.createServer((req, res) => {
    const attempt = (n: number): void => {
      const up = http.get(cluster.url(req.url ?? '/'), { agent: false, headers: { connection: 'close' } }, (r) => {
        if (r.headers['x-worker-id'] === avoid() && n < 20) {
          r.resume();
          return attempt(n + 1);
        }
        served++;
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on('error', () => res.destroy());
    };
    attempt(0);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: (p: string) => `http://127.0.0.1:${port}${p}`,
    served: () => served,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

/** One GET on its own connection (the cluster hands each new connection to the next worker). */
async function getOnce(base: string, p: string, token: string): Promise<Answer> {
  const a = await apiCall(base, p, { token });
  const h = new Headers();
  for (const [k, v] of Object.entries(a.headers)) if (typeof v === 'string') h.set(k, v);
  return { status: a.status, worker: h.get('x-worker-id'), body: a.body, headers: h };
}

describe('broadcasts (/broadcast/*) across two workers', function () {
  this.timeout(60_000);
  let media: ProgrammeMedia;
  let origin: Origin;
  let cluster: TestCluster;
  let editor: FakeEditor;
  let baseDir: string;
  let owner = '';
  let player: Awaited<ReturnType<typeof pinnedTo>>;

  const call = async <T = Record<string, unknown>>(
    method: string, p: string, opts: { body?: unknown; token?: string | null; raw?: string } = {},
  ): Promise<Answer<T>> => {
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (opts.token !== null) headers['X-API-Token'] = opts.token ?? TOKEN;
    let body: string | undefined;
    if (opts.body !== undefined || opts.raw !== undefined) {
      headers['Content-Type'] = 'application/json';
      body = opts.raw ?? JSON.stringify(opts.body);
    }
    const res = await fetch(cluster.url(p), { method, headers, body });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // a playlist
    }
    return { status: res.status, worker: res.headers.get('x-worker-id'), body: parsed as T, headers: res.headers };
  };

  /** The same GET, each on a new connection, until both workers have answered it; returns both answers. */
  const fromBothWorkers = async (p: string): Promise<Map<string, Answer>> => {
    const seen = new Map<string, Answer>();
    for (let i = 0; i < 40 && seen.size < 2; i++) {
      const a = await getOnce(cluster.url(''), p, TOKEN);
      seen.set(a.worker ?? '?', a);
    }
    return seen;
  };

  const startBody = (url: string, extra: Record<string, unknown> = {}) => ({
    stream_url: url, seek_seconds: 0, duration_seconds: 6, segment_start_number: 0, add_discontinuity: false,
    segment_duration: SEG, hls_list_size: 5, transcode: false, video_bitrate: null, audio_bitrate: 192,
    video_resolution: null, video_codec: null, audio_codec: null, preset: null, hwaccel: null,
    callback_url: editor.callbackUrl, headers: null, preferred_audio_language: null, subtitles_enabled: false,
    subtitle_url: null, subtitle_language: null, subtitle_seek_seconds: 0, next_stream_config: null, output_dir: null,
    ...extra,
  });

  before(async function () {
    this.timeout(120_000);
    media = await makeProgrammes(12);
    origin = await startOrigin({ files: { '/A.mp4': media.A, '/B.mp4': media.B } });
    baseDir = await mkdtemp(path.join(os.tmpdir(), 'm3u-proxy-broadcasts-'));
    cluster = await startCluster({
      WORKERS: '2', API_TOKEN: TOKEN, HLS_BROADCAST_DIR: baseDir, HLS_GC_INTERVAL: '1', HLS_GC_AGE_THRESHOLD: '10',
      BROADCAST_CALLBACK_TIMEOUT: '3', HW_ACCEL: 'cpu', RENDER_THREADS: '1',
    }, 60_000);
    editor = await startFakeEditor(cluster.url('/m3u-proxy'), TOKEN, 1500);
    player = await pinnedTo(cluster, () => owner);
  });

  after(async function () {
    this.timeout(30_000);
    await player?.close();
    await editor?.close();
    const code = await cluster?.stop();
    await origin?.close();
    await media?.cleanup();
    // A clean shutdown leaves no FFmpeg writing into the directory.
    if (baseDir) await rm(baseDir, { recursive: true, force: true });
    expect(code).to.equal(0);
  });

  let finalA = -1;
  let pidA = 0;
  const boundary = { wallMs: 0, stallMs: 0 };

  it('starts A with the editor\'s full key set: 200 running with a pid in ≥ grace; status and list from both workers; 401/403 without the token', async () => {
    editor.queueNext('n1', { stream_url: origin.url('/B.mp4'), seek_seconds: 2, duration_seconds: 10, segment_duration: SEG, hls_list_size: 5, callback_url: editor.callbackUrl });
    const t0 = Date.now();
    const res = await call('POST', '/m3u-proxy/broadcast/n1/start', { body: startBody(origin.url('/A.mp4')) });
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    expect(Date.now() - t0).to.be.at.least(2900); // BROADCAST_START_FAILURE_GRACE
    owner = res.worker!;
    expect(res.body.status).to.equal('running');
    expect(res.body.ffmpeg_pid).to.be.a('number');
    expect(res.body.started_at).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$/);
    pidA = res.body.ffmpeg_pid as number;

    const statuses = await fromBothWorkers('/broadcast/n1/status');
    expect([...statuses.keys()]).to.have.length(2);
    for (const a of statuses.values()) {
      expect(a.status).to.equal(200);
      expect(a.body.status).to.equal('running');
      expect(a.body.ffmpeg_pid).to.equal(pidA);
    }
    const lists = await fromBothWorkers('/m3u-proxy/broadcast');
    for (const a of lists.values()) {
      const b = a.body as { broadcasts: Array<Record<string, unknown>>; count: number };
      expect(b.count).to.equal(1);
      expect(b.broadcasts[0]).to.include({ network_id: 'n1', status: 'running', stream_url: origin.url('/A.mp4'), ffmpeg_pid: pidA });
      expect(b.broadcasts[0]).to.have.keys('network_id', 'status', 'current_segment_number', 'started_at', 'stream_url', 'ffmpeg_pid', 'metadata', 'bytes_written');
    }
    expect((await call('GET', '/broadcast/n1/status', { token: null })).status).to.equal(401);
    expect((await call('GET', '/broadcast', { token: null })).status).to.equal(401);
    const wrong = await call<{ detail: string; code: string }>('POST', '/broadcast/n1/stop', { token: 'nope', raw: '[]' });
    expect(wrong.status).to.equal(403);
    expect(wrong.body.detail).to.be.a('string');
  });

  it('serves live.m3u8 and its segments without a token from either worker; ffprobe through the non-owner finds h264 + aac', async () => {
    const pl = await until('a first segment', 15_000, async () => {
      const r = await call<string>('GET', '/m3u-proxy/broadcast/n1/live.m3u8', { token: null });
      return r.status === 200 && playlistNumbers(r.body).length > 0 ? r : null;
    });
    expect(pl.headers.get('content-type')).to.equal('application/vnd.apple.mpegurl');
    expect(pl.headers.get('cache-control')).to.equal('no-cache, no-store, must-revalidate');
    expect(pl.headers.get('access-control-allow-origin')).to.equal('*');
    expect(mediaSequence(pl.body)).to.equal(0);
    expect(pl.body).to.not.include('#EXT-X-ENDLIST');
    expect(pl.body.split('\n').filter((l) => l.endsWith('.ts'))).to.deep.equal(playlistNumbers(pl.body).map((n) => `live${String(n).padStart(6, '0')}.ts`));

    const seg = await fetch(player.url('/m3u-proxy/broadcast/n1/segment/live000000.ts'));
    expect(seg.status).to.equal(200);
    expect(seg.headers.get('content-type')).to.equal('video/MP2T');
    expect(seg.headers.get('x-worker-id')).to.not.equal(owner);
    expect(Buffer.from(await seg.arrayBuffer())[0]).to.equal(0x47);
    const sub = await call<string>('GET', '/broadcast/n1/segment/live.m3u8', { token: null });
    expect(sub.status).to.equal(200);
    expect(sub.headers.get('cache-control')).to.equal('no-cache, no-store, must-revalidate');

    // A player opening the proxy's own playlist resolves bare names against /broadcast/n1/ (our alias route).
    const before = player.served();
    const { stdout } = await exec('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_name', '-of', 'csv=p=0', player.url('/broadcast/n1/live.m3u8')], { timeout: 30_000 });
    expect([...new Set(stdout.split('\n').map((s) => s.trim()).filter(Boolean))].sort()).to.deep.equal(['aac', 'h264']);
    expect(player.served() - before).to.be.at.least(2); // playlist + segment(s), all from the non-owner

    for (const probe of ['/broadcast/n1/segment/x.mp4', '/broadcast/n1/segment/..%2F..%2Fetc%2Fpasswd', '/broadcast/nope/live.m3u8', '/broadcast/nope/segment/live000000.ts']) {
      const r = await call<{ detail: string; code: string }>('GET', probe, { token: null });
      expect(r.status, probe).to.equal(404);
      expect(r.body.detail, probe).to.be.a('string');
    }
  });

  it('A ends: exactly one programme_ended with the final number; the editor starts B inside its handler; numbering continues after a discontinuity', async () => {
    const [ended] = await editor.waitForCallbacks(1, 30_000, (c) => c.body.network_id === 'n1');
    expect(ended!.userAgent).to.equal('M3U-Proxy-Broadcast/1.0');
    expect(ended!.contentType).to.match(/^application\/json/);
    expect(ended!.body).to.include({ network_id: 'n1', event: 'programme_ended', dvr_mode: false, hls_dir: null });
    expect(ended!.body.timestamp).to.match(/\+00:00$/);
    expect(ended!.body.data.exit_code).to.equal(0);
    finalA = ended!.body.data.final_segment_number as number;
    expect(finalA).to.be.at.least(2);
    expect(ended!.body.data.duration_streamed).to.be.within(5, 15);
    expect(isAlive(pidA)).to.equal(false);

    await until('the editor to have started B', 30_000, async () => editor.starts.length >= 1);
    expect(editor.starts[0]!.status, JSON.stringify(editor.starts[0]!.body)).to.equal(200);
    const pl = await until('B\'s first segment', 15_000, async () => {
      const r = await call<string>('GET', '/broadcast/n1/live.m3u8', { token: null });
      return playlistNumbers(r.body).length > 0 && mediaSequence(r.body) === finalA + 1 ? r : null;
    });
    expect(mediaSequence(pl.body)).to.equal(finalA + 1);
    const lines = pl.body.split('\n');
    const firstSeg = lines.findIndex((l) => l.startsWith('live'));
    expect(lines.slice(0, firstSeg)).to.include('#EXT-X-DISCONTINUITY');
    expect(lines[firstSeg]).to.equal(`live${String(finalA + 1).padStart(6, '0')}.ts`);
    // A's segments left the window at once (their files go after 60 s: players at the live edge may still fetch them).
    expect(playlistNumbers(pl.body).every((n) => n > finalA)).to.equal(true);
    // Still one callback for n1: the callback timed out at the proxy (the handler took longer) and was not retried.
    await new Promise((r) => setTimeout(r, 1000));
    expect(editor.callbacks.filter((c) => c.body.network_id === 'n1')).to.have.length(1);
    // The gap players see: wall time between the completion of A's last segment and of B's
    // first, minus the media B's first segment holds (a real-time player has consumed that much).
    const dir = path.join(baseDir, 'broadcast_n1');
    const [lastA, firstB] = await Promise.all([finalA, finalA + 1].map((n) => stat(path.join(dir, `live${String(n).padStart(6, '0')}.ts`))));
    const firstExtinf = Number(/#EXTINF:([\d.]+)/.exec(pl.body)![1]);
    const wallMs = firstB!.mtimeMs - lastA!.mtimeMs;
    boundary.wallMs = wallMs;
    boundary.stallMs = wallMs - firstExtinf * 1000;
    const cbAt = ended!.at;
    const startedAt = editor.starts[0]!.at;
    process.stdout.write(
      `      boundary: A's last segment → B's first segment complete: ${Math.round(wallMs)} ms ` +
      `(A's last segment → callback received ${Math.round(cbAt - lastA!.mtimeMs)} ms, callback → start answered ${startedAt - cbAt} ms, ` +
      `→ B's first segment ${Math.round(firstB!.mtimeMs - startedAt)} ms); B's first EXTINF ${firstExtinf} s; stall beyond the media: ${Math.round(boundary.stallMs)} ms\n`,
    );
  });

  it('a start while B runs is a transition: no callback for B, numbering continues at B\'s final + 1 with a discontinuity', async () => {
    const running = await call('GET', '/broadcast/n1/status');
    expect(running.body.status).to.equal('running');
    const pidB = running.body.ffmpeg_pid as number;
    const before = editor.callbacks.length;
    await until('a segment of B', 15_000, async () => {
      const r = await call<string>('GET', '/broadcast/n1/live.m3u8', { token: null });
      return playlistNumbers(r.body).length > 0;
    });
    // An endless live input, so no natural end can send a callback during the next steps.
    const res = await call('POST', '/broadcast/n1/start', { body: startBody(origin.url('/live.ts'), { duration_seconds: 0 }) });
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    expect(isAlive(pidB)).to.equal(false);
    const pl = await until('the new run\'s playlist', 15_000, async () => {
      const r = await call<string>('GET', '/broadcast/n1/live.m3u8', { token: null });
      return r.body.includes('#EXT-X-DISCONTINUITY') && mediaSequence(r.body) > finalA + 1 ? r.body : null;
    });
    const seq = mediaSequence(pl);
    expect(playlistNumbers(pl)[0]).to.equal(seq);
    // No number reused: nothing of B's on disk at or past the new first number except the new run's.
    expect(seq).to.be.greaterThan(finalA + 1);
    await new Promise((r) => setTimeout(r, 1500));
    expect(editor.callbacks.length).to.equal(before);
  });

  it('stop (body []) answers the final number, kills FFmpeg, sends no callback; then status and a second stop are 404', async () => {
    const st = await call('GET', '/broadcast/n1/status');
    const pid = st.body.ffmpeg_pid as number;
    const before = editor.callbacks.length;
    const res = await call('POST', '/broadcast/n1/stop', { raw: '[]' });
    expect(res.status).to.equal(200);
    expect(res.body).to.include({ message: 'Broadcast stopped', network_id: 'n1', status: 'stopped' });
    expect(res.body.final_segment_number).to.be.a('number');
    expect(isAlive(pid)).to.equal(false);
    for (const a of (await fromBothWorkers('/broadcast/n1/status')).values()) {
      expect(a.status).to.equal(404);
      expect(a.body).to.include({ detail: 'Broadcast not found' });
    }
    const again = await call('POST', '/m3u-proxy/broadcast/n1/stop');
    expect(again.status).to.equal(404);
    await new Promise((r) => setTimeout(r, 1000));
    expect(editor.callbacks.length).to.equal(before);
  });

  it('delete removes the directory; live.m3u8 is then 404; a second delete is 200 too', async () => {
    const res = await call('DELETE', '/broadcast/n1', { raw: '[]' });
    expect(res.status).to.equal(200);
    expect(res.body).to.deep.equal({ message: 'Broadcast n1 cleaned up successfully' });
    expect(existsSync(path.join(baseDir, 'broadcast_n1'))).to.equal(false);
    for (const a of (await fromBothWorkers('/broadcast/n1/live.m3u8')).values()) expect(a.status).to.equal(404);
    expect((await call('DELETE', '/m3u-proxy/broadcast/n1')).status).to.equal(200);
  });

  it('a fresh start (0, no discontinuity) wipes leftovers; a lower start number never reuses one on disk', async () => {
    const dir = path.join(baseDir, 'broadcast_n4');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'live000050.ts'), 'old');
    const res = await call('POST', '/broadcast/n4/start', { body: startBody(origin.url('/A.mp4'), { callback_url: null, duration_seconds: 4 }) });
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    expect(existsSync(path.join(dir, 'live000050.ts'))).to.equal(false);
    const pl = await until('n4 segments', 15_000, async () => {
      const r = await call<string>('GET', '/broadcast/n4/live.m3u8', { token: null });
      return playlistNumbers(r.body).length > 0 ? r.body : null;
    });
    expect(mediaSequence(pl)).to.equal(0);
    // The editor after a lost callback restarts at an old number: the proxy moves past what exists (§7.4).
    expect((await call('POST', '/broadcast/n4/stop')).status).to.equal(200);
    await writeFile(path.join(dir, 'live1000000.ts'), 'a segment numbered past 999,999');
    const again = await call('POST', '/broadcast/n4/start', { body: startBody(origin.url('/A.mp4'), { callback_url: null, segment_start_number: 1, add_discontinuity: true }) });
    expect(again.status).to.equal(200);
    const pl2 = await until('n4 restarted', 15_000, async () => {
      const r = await call<string>('GET', '/broadcast/n4/live.m3u8', { token: null });
      return mediaSequence(r.body) > 1 ? r.body : null;
    });
    expect(mediaSequence(pl2)).to.equal(1_000_001);
    expect(playlistNumbers(pl2)[0]).to.equal(1_000_001);
    const seg = await call('GET', '/broadcast/n4/segment/live1000001.ts', { token: null });
    expect(seg.status).to.equal(200);
    expect((await call('DELETE', '/broadcast/n4')).status).to.equal(200);
  });

  it('auto-transition: at A\'s end B starts with no client call; new_pid equals the pid status reports; B\'s end is a plain programme_ended and the entry stays "stopped"', async () => {
    const res = await call('POST', '/broadcast/n2/start', {
      body: startBody(origin.url('/A.mp4'), {
        duration_seconds: 4,
        next_stream_config: { stream_url: origin.url('/B.mp4'), seek_seconds: 0, duration_seconds: 4, callback_url: editor.callbackUrl },
      }),
    });
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    const [auto] = await editor.waitForCallbacks(1, 30_000, (c) => c.body.network_id === 'n2');
    expect(auto!.body.event).to.equal('programme_ended');
    expect(auto!.body.data.auto_transitioned).to.equal(true);
    const newPid = auto!.body.data.new_pid as number;
    expect(newPid).to.be.a('number');
    const F = auto!.body.data.final_segment_number as number;
    const st = await call('GET', '/broadcast/n2/status');
    expect(st.body).to.include({ status: 'running', ffmpeg_pid: newPid });
    const pl = await until('B on n2', 15_000, async () => {
      const r = await call<string>('GET', '/broadcast/n2/live.m3u8', { token: null });
      return r.body.includes('#EXT-X-DISCONTINUITY') ? r.body : null;
    });
    expect(mediaSequence(pl)).to.equal(F + 1);
    expect(editor.starts.filter((s) => s.at > auto!.at)).to.have.length(0);

    const [, plain] = await editor.waitForCallbacks(2, 30_000, (c) => c.body.network_id === 'n2');
    expect(plain!.body.event).to.equal('programme_ended');
    expect(plain!.body.data).to.not.have.property('auto_transitioned');
    const after = await call('GET', '/broadcast/n2/status');
    expect(after.status).to.equal(200);
    expect(after.body.status).to.equal('stopped');
    expect((await call('GET', '/broadcast/n2/live.m3u8', { token: null })).status).to.equal(200);
    await new Promise((r) => setTimeout(r, 1000));
    expect(editor.callbacks.filter((c) => c.body.network_id === 'n2')).to.have.length(2);
    await call('DELETE', '/broadcast/n2');
  });

  it('an invalid next_stream_config still starts (200) and never auto-transitions', async () => {
    const res = await call('POST', '/broadcast/n5/start', {
      body: startBody(origin.url('/A.mp4'), { duration_seconds: 2, next_stream_config: { stream_url: 'file:///etc/passwd' } }),
    });
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    const [ended] = await editor.waitForCallbacks(1, 30_000, (c) => c.body.network_id === 'n5');
    expect(ended!.body.data).to.not.have.property('auto_transitioned');
    expect((await call('GET', '/broadcast/n5/status')).body.status).to.equal('stopped');
    await call('DELETE', '/broadcast/n5');
  });

  it('404 before the first segment (the editor\'s cold-start poll), and GC removes an unregistered old directory', async () => {
    const res = await call('POST', '/broadcast/n3/start', { body: startBody(origin.url('/slow-headers.ts?ms=20000'), { callback_url: null }) });
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    for (const a of (await fromBothWorkers('/m3u-proxy/broadcast/n3/live.m3u8')).values()) {
      expect(a.status).to.equal(404);
      expect(a.body).to.include({ detail: 'Playlist not available' });
    }
    expect((await call('DELETE', '/broadcast/n3')).status).to.equal(200);

    const old = path.join(baseDir, 'broadcast_old');
    await mkdir(old);
    await writeFile(path.join(old, 'live000001.ts'), 'x');
    const past = new Date(Date.now() - 3600_000);
    await utimes(old, past, past);
    await until('GC to remove broadcast_old', 15_000, async () => !existsSync(old));
  });

  it('metrics: segments written, callbacks by event and result (timeouts: the editor answered after starting), no broadcast left running', async () => {
    const res = await fetch(cluster.url('/metrics'), { headers: { 'X-API-Token': TOKEN } });
    expect(res.status).to.equal(200);
    const text = await res.text();
    const value = (re: RegExp): number => text.split('\n').filter((l) => re.test(l)).reduce((n, l) => n + Number(l.split(' ').pop()), 0);
    expect(value(/^m3u_proxy_broadcast_segments_total /)).to.be.greaterThan(5);
    const sent = editor.callbacks.filter((c) => c.body.event === 'programme_ended').length;
    expect(value(/^m3u_proxy_broadcast_callbacks_total\{.*event="programme_ended"/)).to.equal(sent);
    // The n1 callback's handler started B before answering, which takes longer than BROADCAST_CALLBACK_TIMEOUT.
    expect(value(/^m3u_proxy_broadcast_callbacks_total\{.*event="programme_ended".*result="timeout"/)).to.be.at.least(1);
    expect(value(/^m3u_proxy_broadcasts_running\{/)).to.equal(0);
  });
});
