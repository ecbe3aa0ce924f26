// Stream resolvers against a local origin with the real streamlink and yt-dlp: yt-dlp's generic
// extractor and streamlink's httpstream:// / hls:// work on plain media URLs.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sanitizeResolverArgs, splitArgs } from '../src/streams/resolvers/resolver-args.js';
import { streamlinkTarget } from '../src/streams/resolvers/resolver-run.js';
import { apiCall } from './support/api-call.js';
import { startOrigin, type Origin } from './support/origin.js';
import { startProxy, type TestProxy } from './support/proxy.js';
import { openViewer, sleep, waitFor } from './support/ts-viewer.js';

const TOKEN = 'resolver-test-token';
const COPY = '-i {input_url} -c copy {output_args}';

/** Resolver processes on this machine whose arguments name `marker`. */
function resolverPids(marker: string): number[] {
  const out = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
  return out.split('\n').filter((l) => /streamlink|yt-dlp/.test(l) && l.includes(marker)).map((l) => Number(l.trim().split(/\s+/)[0]));
}

describe('stream resolvers (streamlink, yt-dlp)', function () {
  this.timeout(120_000);
  let origin: Origin;
  let proxy: TestProxy;
  let dir: string;
  const api = <T = Record<string, unknown>>(p: string, opts: Parameters<typeof apiCall>[2] = {}) =>
    apiCall<T>(proxy.base, p, { token: TOKEN, ...opts });

  before(async () => {
    origin = await startOrigin();
    proxy = await startProxy({ API_TOKEN: TOKEN, SHARED_STREAM_GRACE: '0.2', RESOLVER_TIMEOUT: '40' });
    dir = await mkdtemp(path.join(os.tmpdir(), 'resolver-test-'));
  });
  after(async () => {
    await proxy?.close();
    await origin?.close();
    await rm(dir, { recursive: true, force: true });
    await waitFor(() => resolverPids(`127.0.0.1:${origin.port}`).length === 0, 10_000, 'no resolver left behind');
  });

  it('/info reports the versions detected at start', async () => {
    const info = await api<{ streamlink_version: string; ytdlp_version: string }>('/info');
    expect(info.body.streamlink_version).to.equal(execFileSync('streamlink', ['--version'], { encoding: 'utf8' }).trim().replace(/^streamlink\s+/, ''));
    expect(info.body.ytdlp_version).to.equal(execFileSync('yt-dlp', ['--version'], { encoding: 'utf8' }).trim());
  });

  it('yt-dlp (resolver_args as an empty string) resolves a page URL for a transcode; FFmpeg opens the media URL with the stream UA', async () => {
    const marker = '/live/ytdlp-tx.ts';
    const created = await api<{ stream_id: string }>('/transcode', {
      method: 'POST',
      body: { url: origin.url(marker), profile: COPY, resolver: 'ytdlp', resolver_args: '', cookies_path: null, user_agent: 'EditorUA/2' },
    });
    expect(created.status, JSON.stringify(created.body)).to.equal(200);
    const v = openViewer(proxy.url(`/m3u-proxy/stream/${created.body.stream_id}?username=alice`));
    try {
      expect(await v.status).to.equal(200);
      await waitFor(() => v.bytes() > 188 * 100, 60_000, 'transcoded bytes');
      expect((await v.firstBytes(1))[0]).to.equal(0x47);
      // yt-dlp looked at the page, then FFmpeg opened it: two requests, the latest FFmpeg's.
      expect(origin.totalRequests(marker)).to.be.at.least(2);
      expect(origin.lastHeaders(marker)!['user-agent']).to.equal('EditorUA/2');
    } finally {
      v.close();
    }
  });

  it('streamlink pipes a direct stream (httpstream://): three viewers, one resolver, one upstream connection, the matching cookies sent', async () => {
    const marker = '/live/streamlink-direct.ts';
    const jar = path.join(dir, 'streamlink-cookies.txt');
    await writeFile(jar, '# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsl\tabc\nother.example\tTRUE\t/\tFALSE\t0\tnope\tx\n');
    const created = await api<{ stream_id: string }>('/streams', {
      method: 'POST', body: { url: origin.url(marker), resolver: 'streamlink', resolver_args: 'best --stream-timeout 20', cookies_path: jar },
    });
    expect(created.status, JSON.stringify(created.body)).to.equal(200);
    const viewers = [1, 2, 3].map(() => openViewer(proxy.url(`/stream/${created.body.stream_id}`)));
    try {
      expect(await Promise.all(viewers.map((v) => v.status))).to.deep.equal([200, 200, 200]);
      await waitFor(() => viewers.every((v) => v.bytes() > 188 * 50), 60_000, 'every viewer to get bytes');
      expect(resolverPids(marker)).to.have.length(1);
      expect(origin.openConnections(marker)).to.equal(1);
      expect(origin.lastHeaders(marker)!.cookie).to.equal('sl=abc');
      const entry = await api<{ stream: { stream_type: string } }>(`/streams/${created.body.stream_id}`);
      expect(entry.body.stream.stream_type).to.equal('Live Continuous');
    } finally {
      viewers.forEach((v) => v.close());
    }
    await waitFor(() => resolverPids(marker).length === 0, 15_000, 'the resolver to stop after the last viewer');
    await origin.waitForClosedAll(marker, 10_000);
  });

  it('streamlink resolves an HLS playlist (hls://) for a transcode, resolver_args as an array', async () => {
    const created = await api<{ stream_id: string }>('/transcode', {
      method: 'POST', body: { url: origin.url('/playlist.m3u8'), profile: COPY, resolver: 'streamlink', resolver_args: ['--hls-live-edge', '1'] },
    });
    expect(created.status, JSON.stringify(created.body)).to.equal(200);
    const v = openViewer(proxy.url(`/stream/${created.body.stream_id}`), { keepBody: true });
    try {
      expect(await v.status).to.equal(200);
      await waitFor(() => v.bytes() >= 188 * 20, 60_000, 'bytes of the playlist segment');
      expect(origin.totalRequests('/close-after.ts')).to.be.at.least(1);
    } finally {
      v.close();
    }
  });

  it('yt-dlp pipes a direct stream with the cookies of cookies_path, and leaves the user file as it was', async () => {
    const marker = '/live/ytdlp-cookies.ts';
    const file = path.join(dir, 'cookies.txt');
    const text = `# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\ts3cr3t-value\n`;
    await writeFile(file, text);
    const created = await api<{ stream_id: string }>('/streams', {
      method: 'POST', body: { url: origin.url(marker), resolver: 'ytdlp', resolver_args: '-f b', cookies_path: file },
    });
    expect(created.status, JSON.stringify(created.body)).to.equal(200);
    const v = openViewer(proxy.url(`/stream/${created.body.stream_id}`));
    try {
      expect(await v.status).to.equal(200);
      await waitFor(() => v.bytes() > 188 * 50, 60_000, 'piped bytes');
      expect(origin.lastHeaders(marker)!.cookie).to.equal('session=s3cr3t-value');
    } finally {
      v.close();
    }
    expect(await readFile(file, 'utf8')).to.equal(text);
  });

  it('a failing resolver is a 502 with its reason, credentials redacted; no process is left', async () => {
    const url = origin.url('/status/404').replace('http://', 'http://user:pa55word@') + '.ts';
    const created = await api<{ stream_id: string }>('/streams', { method: 'POST', body: { url, resolver: 'streamlink', resolver_args: '' } });
    expect(created.status).to.equal(200);
    const res = await apiCall<{ detail: string; code: string }>(proxy.base, `/stream/${created.body.stream_id}`);
    const body = res.body;
    expect(res.status).to.equal(502);
    expect(body.code).to.equal('UPSTREAM_UNAVAILABLE');
    expect(body.detail).to.match(/^streamlink failed: .*404/);
    expect(body.detail).to.not.include('pa55word');
  });

  it('refuses resolver arguments that write files, read configs or plugins, or run commands (422, nothing created)', async () => {
    const bad = [
      '--exec "rm -rf /"', '-o /tmp/out.ts', '--output=/tmp/x', '--config-location /etc/passwd', '--plugin-dirs /tmp',
      'best | sh', 'best; id', '--cookies /etc/shadow', '--batch-file /etc/hosts', '--ffmpeg-location /bin/sh',
    ];
    for (const args of bad) {
      const res = await api<{ code: string; detail: string }>('/streams', {
        method: 'POST', body: { url: origin.url('/live/refused.ts'), resolver: 'ytdlp', resolver_args: args },
      });
      expect(res.status, args).to.equal(422);
      expect(res.body.detail, args).to.match(/^resolver_args: /);
    }
    const sl = await api<{ detail: string }>('/streams', {
      method: 'POST', body: { url: origin.url('/live/refused.ts'), resolver: 'streamlink', resolver_args: '--player /bin/sh best' },
    });
    expect(sl.status).to.equal(422);
    expect(sl.body.detail).to.include('runs commands');
    const list = await api<{ streams: Array<{ original_url: string }> }>('/streams');
    expect(list.body.streams.map((s) => s.original_url)).to.not.include(origin.url('/live/refused.ts'));
  });

  it('splits like a shell without one, and normalizes allowed options', () => {
    expect(splitArgs(`-f "best[height<=720]" --add-header 'X-A: b c' $HOME`)).to.deep.equal(['-f', 'best[height<=720]', '--add-header', 'X-A: b c', '$HOME']);
    expect(sanitizeResolverArgs('ytdlp', '-fbest --format-sort=res --no-playlist')).to.deep.equal({ options: ['-f', 'best', '--format-sort', 'res', '--no-playlist'], quality: null });
    expect(sanitizeResolverArgs('streamlink', '720p,best --hls-live-edge=3')).to.deep.equal({ options: ['--hls-live-edge', '3'], quality: '720p,best' });
    expect(sanitizeResolverArgs('ytdlp', '')).to.deep.equal({ options: [], quality: null });
    expect(() => sanitizeResolverArgs('ytdlp', 'https://elsewhere.example/')).to.throw(/not allowed/);
    expect(() => sanitizeResolverArgs('streamlink', 'best worst')).to.throw(/not allowed/);
    expect(streamlinkTarget('http://h/a/b.m3u8?x=1')).to.equal('hls://http://h/a/b.m3u8?x=1');
    expect(streamlinkTarget('http://h/live/1.ts')).to.equal('httpstream://http://h/live/1.ts');
    expect(streamlinkTarget('https://www.twitch.tv/foo')).to.equal('https://www.twitch.tv/foo');
  });

  it('a missing resolver binary is a 503 with a clear message; /info reports it as null', async () => {
    const bare = await startProxy({ STREAMLINK_PATH: path.join(dir, 'no-streamlink'), YTDLP_PATH: path.join(dir, 'no-yt-dlp') });
    try {
      for (const resolver of ['streamlink', 'ytdlp']) {
        const res = await apiCall<{ code: string; detail: string }>(bare.base, '/streams', {
          method: 'POST', body: { url: origin.url('/live/missing.ts'), resolver, resolver_args: '' },
        });
        expect(res.status).to.equal(503);
        expect(res.body.code).to.equal('RESOLVER_UNAVAILABLE');
        expect(res.body.detail).to.match(/(streamlink|yt-dlp) resolver is not installed/);
      }
      const info = await apiCall<{ streamlink_version: unknown; ytdlp_version: unknown }>(bare.base, '/info');
      expect([info.body.streamlink_version, info.body.ytdlp_version]).to.deep.equal([null, null]);
    } finally {
      await bare.close();
    }
  });

  describe('GET /validate-cookies-file', () => {
    it('answers {valid, message} for a good file, a missing one, a directory and a non-cookie file, never the contents', async () => {
      const good = path.join(dir, 'good.txt');
      await writeFile(good, '# Netscape HTTP Cookie File\n.example.com\tTRUE\t/\tTRUE\t2147483647\tsid\tTOPSECRET\n#HttpOnly_.example.com\tTRUE\t/\tFALSE\t0\th\tv\n');
      const junk = path.join(dir, 'junk.txt');
      await writeFile(junk, 'password=TOPSECRET\n');
      const check = async (p: string) =>
        (await api<{ valid: boolean; message: string }>(`/validate-cookies-file?path=${encodeURIComponent(p)}`)).body;
      const ok = await check(good);
      expect(ok).to.deep.equal({ valid: true, message: 'Valid Netscape cookie file (2 cookies)' });
      expect((await check(path.join(dir, 'nope.txt'))).valid).to.equal(false);
      expect((await check(dir)).message).to.match(/not a regular file/);
      const bad = await check(junk);
      expect(bad.valid).to.equal(false);
      expect(bad.message).to.match(/Netscape/);
      expect(JSON.stringify([ok, bad])).to.not.include('TOPSECRET');
      expect((await check('relative/path.txt')).message).to.match(/absolute/);
      // On the /m3u-proxy base path too, and a missing path is a 422.
      const prefixed = await api<{ valid: boolean }>(`/m3u-proxy/validate-cookies-file?path=${encodeURIComponent(good)}`);
      expect(prefixed.body.valid).to.equal(true);
      expect((await api('/validate-cookies-file')).status).to.equal(422);
    });

    it('needs the token (401 without, 403 wrong)', async () => {
      const p = `/validate-cookies-file?path=${encodeURIComponent('/etc/hostname')}`;
      expect((await apiCall(proxy.base, p)).status).to.equal(401);
      expect((await apiCall(proxy.base, p, { token: 'wrong' })).status).to.equal(403);
    });

    it('a cookies_path that is not a cookie file is a 422 at creation', async () => {
      const res = await api<{ errors: Array<{ field: string }> }>('/streams', {
        method: 'POST', body: { url: origin.url('/live/cookie-422.ts'), resolver: 'ytdlp', cookies_path: '/etc/hostname' },
      });
      expect(res.status).to.equal(422);
      expect(res.body.errors[0]!.field).to.equal('cookies_path');
    });
  });

  it('leaves no resolver process once the streams are deleted', async () => {
    const list = await api<{ streams: Array<{ stream_id: string }> }>('/streams');
    for (const s of list.body.streams) await api(`/streams/${s.stream_id}`, { method: 'DELETE' });
    await sleep(500);
    await waitFor(() => resolverPids(`127.0.0.1:${origin.port}`).length === 0, 15_000, 'no resolver process');
  });
});
