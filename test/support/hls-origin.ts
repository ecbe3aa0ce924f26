// A real HLS origin for the proxy's tests: a master playlist with relative and absolute variant
// URIs, TS and fMP4 (EXT-X-MAP) renditions, an AES-128 encrypted rendition with its key, a
// redirect into another directory, tags no parser knows, and a live playlist that advances one
// 1 s segment per second (with a discontinuity each time it wraps its 3 segments). Segments are
// made once per process with ffmpeg (media.ts) and sent in two halves 100 ms apart, so several
// requests for one segment really overlap. Requests are counted per path (query ignored).
import { createCipheriv } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { makeHlsSegments } from './media.js';

export interface HlsOrigin {
  readonly port: number;
  url(p: string): string;
  /** Requests received for a path (query ignored). */
  requests(p: string): number;
  /** Requests for paths that start with `prefix`. */
  requestsUnder(prefix: string): number;
  lastHeaders(p: string): http.IncomingHttpHeaders | undefined;
  /** Plain TS segments (seg0.ts …) and the fMP4 parts, as the origin serves them. */
  readonly ts: Buffer[];
  readonly fmp4Init: Buffer;
  readonly fmp4: Buffer[];
  readonly key: Buffer;
  /** seg1.ts without its PAT and PMT packets (pids 0 and 0x1000), served after a discontinuity. */
  readonly noTables: Buffer;
  close(): Promise<void>;
}

const SEGMENT_S = 1;
const IV = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');

async function readSegments(kind: 'ts' | 'fmp4'): Promise<{ init: Buffer | null; segs: Buffer[] }> {
  const playlist = await makeHlsSegments(kind);
  const dir = path.dirname(playlist);
  const names = (await readFile(playlist, 'utf8')).split('\n').filter((l) => l && !l.startsWith('#'));
  const segs = await Promise.all(names.map((n) => readFile(path.join(dir, n))));
  return { init: kind === 'fmp4' ? await readFile(path.join(dir, 'init.mp4')) : null, segs };
}

function mediaPlaylist(uris: string[], extra: { head?: string[]; ended?: boolean; seq?: number } = {}): string {
  const lines = ['#EXTM3U', '#EXT-X-VERSION:7', `#EXT-X-TARGETDURATION:${SEGMENT_S}`, `#EXT-X-MEDIA-SEQUENCE:${extra.seq ?? 0}`, ...(extra.head ?? [])];
  for (const u of uris) lines.push(u.startsWith('#') ? u : `#EXTINF:${SEGMENT_S}.000000,\n${u}`);
  if (extra.ended !== false) lines.push('#EXT-X-ENDLIST');
  return `${lines.join('\n')}\n`;
}

export async function startHlsOrigin(): Promise<HlsOrigin> {
  const [{ segs: ts }, { init, segs: fmp4 }] = await Promise.all([readSegments('ts'), readSegments('fmp4')]);
  const key = Buffer.from('0123456789abcdef');
  const enc = ts.map((s) => {
    const c = createCipheriv('aes-128-cbc', key, IV);
    return Buffer.concat([c.update(s), c.final()]);
  });
  const noTables = Buffer.concat(
    Array.from({ length: ts[1]!.length / 188 }, (_, i) => ts[1]!.subarray(i * 188, i * 188 + 188))
      .filter((p) => ![0, 0x1000].includes(((p[1]! & 0x1f) << 8) | p[2]!)),
  );
  const counts = new Map<string, number>();
  const headers = new Map<string, http.IncomingHttpHeaders>();
  const started = Date.now();
  let base = '';

  const send = (res: http.ServerResponse, type: string, body: Buffer | string, paced = false): void => {
    const buf = typeof body === 'string' ? Buffer.from(body) : body;
    res.writeHead(200, { 'Content-Type': type, 'Content-Length': String(buf.length) });
    if (!paced) return void res.end(buf);
    const half = Math.floor(buf.length / 2);
    res.write(buf.subarray(0, half));
    setTimeout(() => res.end(buf.subarray(half)), 100);
  };
  const M3U8 = 'application/vnd.apple.mpegurl';

  const server = http.createServer((req, res) => {
    const p = (req.url ?? '/').split('?')[0]!;
    counts.set(p, (counts.get(p) ?? 0) + 1);
    headers.set(p, req.headers);
    const seg = /^\/hls\/(v1|enc|fmp4)\/seg(\d+)\.(ts|m4s)$/.exec(p);
    if (seg) {
      const i = Number(seg[2]);
      const list = seg[1] === 'enc' ? enc : seg[1] === 'fmp4' ? fmp4 : ts;
      if (i >= list.length) return void res.writeHead(404).end();
      return send(res, seg[3] === 'm4s' ? 'video/iso.segment' : 'video/mp2t', list[i]!, true);
    }
    const live = /^\/live\/s(\d+)\.ts$/.exec(p);
    if (live) return send(res, 'video/mp2t', ts[Number(live[1]) % ts.length]!, true);
    switch (p) {
      case '/hls/master.m3u8':
        return send(res, M3U8, [
          '#EXTM3U', '#EXT-X-VERSION:7', '#EXT-X-INDEPENDENT-SEGMENTS',
          '#EXT-X-ORIGIN-CUSTOM:foo="bar",n=1',
          '#EXT-X-SESSION-KEY:METHOD=AES-128,URI="/keys/k1.key",IV=0x000102030405060708090a0b0c0d0e0f',
          '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="alt",DEFAULT=NO,AUTOSELECT=NO,URI="v1/media.m3u8"',
          '#EXT-X-I-FRAME-STREAM-INF:BANDWIDTH=90000,URI="v1/media.m3u8"',
          '#EXT-X-STREAM-INF:BANDWIDTH=500000,CODECS="avc1.42c00c,mp4a.40.2"',
          'v1/media.m3u8',
          '#EXT-X-STREAM-INF:BANDWIDTH=400000,CODECS="avc1.42c00c,mp4a.40.2"',
          `${base}/hls/v2/media.m3u8`,
          '#EXT-X-STREAM-INF:BANDWIDTH=300000,CODECS="avc1.42c00c,mp4a.40.2"',
          'fmp4/media.m3u8',
          '#EXT-X-STREAM-INF:BANDWIDTH=200000,CODECS="avc1.42c00c,mp4a.40.2"',
          'enc/media.m3u8',
          '',
        ].join('\n'));
      case '/hls/simple.m3u8':
        return send(res, M3U8, ['#EXTM3U', '#EXT-X-STREAM-INF:BANDWIDTH=500000', 'v1/media.m3u8', '#EXT-X-STREAM-INF:BANDWIDTH=400000', `${base}/hls/v2/media.m3u8`, ''].join('\n'));
      case '/hls/v1/media.m3u8':
        return send(res, M3U8, mediaPlaylist(ts.map((_, i) => `seg${i}.ts`), { head: ['#EXT-X-ORIGIN-CUSTOM:v1'] }));
      case '/hls/v2/media.m3u8':
        // Absolute segment URIs, plus LL-HLS parts and a preload hint.
        return send(res, M3U8, mediaPlaylist([...ts.map((_, i) => `${base}/hls/v1/seg${i}.ts`), `#EXT-X-PART:DURATION=0.5,URI="${base}/hls/v1/seg0.ts"`, `#EXT-X-PRELOAD-HINT:TYPE=PART,URI="/hls/v1/seg1.ts"`]));
      case '/hls/fmp4/media.m3u8':
        return send(res, M3U8, mediaPlaylist(fmp4.map((_, i) => `seg${i}.m4s`), { head: ['#EXT-X-MAP:URI="init.mp4"'] }));
      case '/hls/fmp4/init.mp4':
        return send(res, 'video/mp4', init!);
      case '/hls/enc/media.m3u8':
        return send(res, M3U8, mediaPlaylist(enc.map((_, i) => `seg${i}.ts`), { head: [`#EXT-X-KEY:METHOD=AES-128,URI="/keys/k1.key",IV=0x${IV.toString('hex')}`] }));
      case '/hls/disc/media.m3u8':
        return send(res, M3U8, mediaPlaylist(['/hls/v1/seg0.ts', '#EXT-X-DISCONTINUITY', 'notables.ts']));
      case '/hls/disc/notables.ts':
        return send(res, 'video/mp2t', noTables);
      case '/keys/k1.key':
        return send(res, 'application/octet-stream', key);
      case '/r/media.m3u8':
        res.writeHead(302, { Location: '/hls/v1/media.m3u8' });
        return void res.end();
      case '/live/media.m3u8': {
        const now = Math.floor((Date.now() - started) / (SEGMENT_S * 1000));
        const first = Math.max(0, now - 2);
        const uris: string[] = [];
        for (let s = first; s <= now; s++) {
          if (s > first && s % ts.length === 0) uris.push('#EXT-X-DISCONTINUITY');
          uris.push(`s${s}.ts`);
        }
        const dseq = Math.floor(first / ts.length);
        return send(res, M3U8, mediaPlaylist(uris, { seq: first, ended: false, head: [`#EXT-X-DISCONTINUITY-SEQUENCE:${dseq}`] }));
      }
      case '/movie/film.m3u8':
        return send(res, M3U8, mediaPlaylist(ts.map((_, i) => `/hls/v1/seg${i}.ts`)));
      case '/movie/notreally.m3u8':
        return send(res, 'video/mp4', ts[0]!);
      case '/live/plain':
        return send(res, M3U8, mediaPlaylist(ts.map((_, i) => `/hls/v1/seg${i}.ts`)));
      default:
        res.writeHead(404, { 'Content-Type': 'text/plain' });
        res.end('not found');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
  return {
    port, ts, fmp4Init: init!, fmp4, key, noTables,
    url: (p) => `${base}${p}`,
    requests: (p) => counts.get(p) ?? 0,
    requestsUnder: (prefix) => [...counts].filter(([p]) => p.startsWith(prefix)).reduce((n, [, c]) => n + c, 0),
    lastHeaders: (p) => headers.get(p),
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
