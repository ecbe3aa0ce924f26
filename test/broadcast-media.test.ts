// BROADCAST.md §8 scenarios 10–13 against the real product (one process): failing inputs and
// the retry gate, audio-language choice, WebVTT subtitles (embedded and an external SRT),
// transcoding, the GC switch, and one lock per network (six networks start at once).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { makeProgrammes, startFakeEditor, until, type FakeEditor, type ProgrammeMedia } from './support/broadcast-editor.js';
import { startCluster, type TestCluster } from './support/cluster.js';
import { startOrigin, type Origin } from './support/origin.js';

const exec = promisify(execFile);
const TOKEN = 't';

describe('broadcasts: failures, tracks, subtitles, transcode, GC switch', function () {
  this.timeout(90_000);
  let media: ProgrammeMedia;
  let origin: Origin;
  let proxy: TestCluster;
  let editor: FakeEditor;
  let baseDir: string;

  const start = async (id: string, body: Record<string, unknown>) => {
    const res = await fetch(proxy.url(`/broadcast/${id}/start`), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-API-Token': TOKEN },
      body: JSON.stringify({ segment_duration: 2, hls_list_size: 5, next_stream_config: null, output_dir: null, ...body }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const get = (p: string) => fetch(proxy.url(p));
  /** Waits until the playlist lists a segment; its first segment's number. */
  const firstSegment = (id: string) => until(`a segment of ${id}`, 30_000, async () => {
    const r = await get(`/broadcast/${id}/live.m3u8`);
    if (r.status !== 200) return null;
    const m = /^live(\d+)\.ts$/m.exec(await r.text());
    return m ? m[1]! : null;
  });
  const probe = async (url: string, entries: string) => {
    const { stdout } = await exec('ffprobe', ['-v', 'error', '-show_entries', entries, '-of', 'json', url], { timeout: 30_000 });
    return (JSON.parse(stdout) as { streams: Array<Record<string, unknown> & { tags?: Record<string, string> }> }).streams;
  };

  before(async function () {
    this.timeout(120_000);
    media = await makeProgrammes(12);
    origin = await startOrigin({ files: { '/A.mp4': media.A, '/C.mkv': media.C, '/subs.srt': media.srt } });
    baseDir = await mkdtemp(path.join(os.tmpdir(), 'm3u-proxy-broadcasts-'));
    proxy = await startCluster({
      API_TOKEN: TOKEN, HLS_BROADCAST_DIR: baseDir, HW_ACCEL: 'cpu', RENDER_THREADS: '1',
      // A longer grace than the default 3 s: on a loaded test box FFmpeg may take that long to fail.
      BROADCAST_START_FAILURE_GRACE: '6', BROADCAST_START_RETRY_COOLDOWN: '2', BROADCAST_GC_ENABLED: 'false', HLS_GC_INTERVAL: '1', HLS_GC_AGE_THRESHOLD: '1',
    }, 60_000, 'single');
    editor = await startFakeEditor(proxy.url(''), TOKEN, 0);
  });

  after(async function () {
    this.timeout(30_000);
    await editor?.close();
    const code = await proxy?.stop();
    await origin?.close();
    await media?.cleanup();
    if (baseDir) await rm(baseDir, { recursive: true, force: true });
    expect(code).to.equal(0);
  });

  it('a failing input: 500 with a sentence; an input_error detail callback, then broadcast_failed with a non-zero exit code', async () => {
    const res = await start('f1', { stream_url: origin.url('/status/404'), callback_url: editor.callbackUrl });
    expect(res.status).to.equal(500);
    expect(res.body.detail).to.be.a('string').and.match(/^Broadcast f1 failed shortly after start: .*404/);
    const [detail, failed] = await editor.waitForCallbacks(2, 15_000, (c) => c.body.network_id === 'f1');
    expect(detail!.body.event).to.equal('broadcast_failed');
    expect(detail!.body.data).to.include({ error_type: 'input_error' });
    expect(failed!.body.event).to.equal('broadcast_failed');
    expect(failed!.body.data.exit_code).to.be.a('number').and.not.equal(0);
    expect(failed!.body.data.error).to.match(/^FFmpeg exited with code -?\d+$/);
    expect((await get('/broadcast/f1/status')).status).to.equal(401);
    const st = await fetch(proxy.url('/broadcast/f1/status'), { headers: { 'X-API-Token': TOKEN } });
    expect(st.status).to.equal(404); // a failed start is not registered
  });

  it('the 4th failed start inside the window is refused with "retry allowed after Ns"; after the cooldown starts work again', async () => {
    for (let i = 0; i < 2; i++) expect((await start('f1', { stream_url: origin.url('/status/404') })).status).to.equal(500);
    const refused = await start('f1', { stream_url: origin.url('/A.mp4') });
    expect(refused.status).to.equal(500);
    expect(refused.body.detail).to.match(/^Exceeded max start retries for broadcast f1; retry allowed after \d+s$/);
    await new Promise((r) => setTimeout(r, 2200));
    const ok = await start('f1', { stream_url: origin.url('/A.mp4'), duration_seconds: 2 });
    expect(ok.status, JSON.stringify(ok.body)).to.equal(200);
    await fetch(proxy.url('/broadcast/f1'), { method: 'DELETE', headers: { 'X-API-Token': TOKEN } });
  });

  it('refuses a local file or a missing stream_url with 422 and a sentence detail', async () => {
    for (const body of [{ stream_url: 'file:///etc/passwd' }, {}, { stream_url: origin.url('/A.mp4'), video_codec: 'libx264 -f' }]) {
      const res = await start('f2', body);
      expect(res.status, JSON.stringify(body)).to.equal(422);
      expect(res.body.detail).to.be.a('string');
      expect(res.body.code).to.equal('VALIDATION_ERROR');
    }
    const bad = await start('bad..id', { stream_url: origin.url('/A.mp4') });
    expect(bad.status).to.equal(422);
  });

  it('six networks start at once (a lock per network): audio by language and by number, a missing language, embedded and external subtitles, a transcode', async () => {
    const C = origin.url('/C.mkv');
    const t0 = Date.now();
    const results = await Promise.all([
      start('fra', { stream_url: C, preferred_audio_language: 'fra' }),
      start('zz', { stream_url: C, preferred_audio_language: 'zz' }),
      start('second', { stream_url: C, preferred_audio_language: '1' }),
      start('subs', { stream_url: C, subtitles_enabled: true }),
      start('srt', { stream_url: origin.url('/A.mp4'), subtitles_enabled: true, subtitle_url: origin.url('/subs.srt'), subtitle_language: 'eng' }),
      start('tx', { stream_url: origin.url('/A.mp4'), transcode: true, video_resolution: '320x180', video_bitrate: '400', preset: null }),
    ]);
    const elapsed = Date.now() - t0;
    for (const r of results) expect(r.status, JSON.stringify(r.body)).to.equal(200);
    // One lock for all networks would serialize six ≥ 6 s starts (≥ 36 s).
    expect(elapsed).to.be.below(30_000);

    const language = async (id: string) => {
      const n = await firstSegment(id);
      const streams = await probe(proxy.url(`/broadcast/${id}/segment/live${n}.ts`), 'stream=codec_type:stream_tags=language');
      return streams.find((s) => s.codec_type === 'audio')?.tags?.language;
    };
    expect(await language('fra')).to.equal('fra');
    expect(await language('zz')).to.equal('eng'); // started anyway, on the first track
    expect(await language('second')).to.equal('fra');

    for (const id of ['subs', 'srt']) {
      const n = Number(await firstSegment(id));
      const vtt = await until(`${id}'s live_vtt.m3u8`, 20_000, async () => {
        const r = await get(`/broadcast/${id}/segment/live_vtt.m3u8`);
        return r.status === 200 ? r.text() : null;
      });
      const vttNumbers = [...vtt.matchAll(/^live(\d+)\.vtt$/gm)].map((m) => Number(m[1]));
      expect(vttNumbers, vtt).to.include(n); // the same sequence number as the .ts, not zero-padded
      const seg = await get(`/broadcast/${id}/segment/live${n}.vtt`);
      expect(seg.status).to.equal(200);
      expect(seg.headers.get('content-type')).to.match(/^text\/vtt/);
      expect(await seg.text()).to.match(/^WEBVTT/);
    }

    const n = await firstSegment('tx');
    const streams = await probe(proxy.url(`/broadcast/tx/segment/live${n}.ts`), 'stream=codec_name,width,height,sample_rate,channels');
    expect(streams.find((s) => s.codec_name === 'h264')).to.include({ width: 320, height: 180 });
    expect(streams.find((s) => s.codec_name === 'aac')).to.include({ sample_rate: '48000', channels: 2 });

    await Promise.all(['fra', 'zz', 'second', 'subs', 'srt', 'tx'].map((id) =>
      fetch(proxy.url(`/broadcast/${id}`), { method: 'DELETE', headers: { 'X-API-Token': TOKEN } })));
  });

  it('BROADCAST_GC_ENABLED=false keeps an old unregistered directory', async () => {
    const old = path.join(baseDir, 'broadcast_old');
    await mkdir(old);
    await writeFile(path.join(old, 'live000001.ts'), 'x');
    const past = new Date(Date.now() - 3600_000);
    await utimes(old, past, past);
    await new Promise((r) => setTimeout(r, 3000)); // three HLS_GC_INTERVALs
    expect(existsSync(old)).to.equal(true);
  });
});
