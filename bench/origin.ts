// The bench's live origin: a real H.264 + AAC MPEG-TS made once with ffmpeg (lavfi sources,
// constant mux rate), looped forever and served at its real byte rate, like an IPTV
// provider's live channel. Every `/live/<name>.ts` is the same channel (one shared live
// clock), so the proxy, the floor server and the direct probes each get their own path and
// the origin can count upstream connections per path.
import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { sliceWrapped } from '../test/support/origin.js';

const execFileAsync = promisify(execFile);
const TS = 188;
/** Pacing tick: ~20 KB writes at 8 Mbit/s, like a typical origin's socket writes. */
const TICK_MS = 20;
/** Sent at once to a new connection (a real origin answers with what it has buffered). */
const PREFILL_S = 0.1;
/** Debt beyond this is skipped, not burst (a live feed skips ahead; it never replays). */
const MAX_DEBT_S = 1;

export interface MediaOptions {
  seconds: number;
  /** Mux rate in bit/s (the file is padded to it, so its byte rate is constant). */
  muxrate: number;
}

/** Makes the live TS into `dir` (about `seconds` s at `muxrate`); returns its path. */
export async function makeMedia(dir: string, opts: MediaOptions): Promise<string> {
  const out = path.join(dir, 'live.ts');
  const kbps = Math.round(opts.muxrate / 1000);
  // Video leaves room for audio and TS/PES overhead under the mux rate (7M of 8M).
  const videoK = Math.floor(kbps * 0.875);
  await execFileAsync('ffmpeg', [
    '-hide_banner', '-nostdin', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=25',
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-t', String(opts.seconds),
    '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p',
    '-b:v', `${videoK}k`, '-maxrate', `${videoK}k`, '-bufsize', `${videoK}k`,
    '-g', '50', '-keyint_min', '50', '-sc_threshold', '0',
    '-c:a', 'aac', '-b:a', '128k',
    '-muxrate', `${kbps}k`,
    '-f', 'mpegts', out,
  ], { timeout: 120_000 });
  return out;
}

/** Bytes per second of the file: its size over the duration ffprobe reports. */
export async function byteRateOf(file: string): Promise<number> {
  const [{ stdout }, info] = await Promise.all([
    execFileAsync('ffprobe', ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', file]),
    stat(file),
  ]);
  const duration = Number.parseFloat(stdout.trim());
  if (!(duration > 0)) throw new Error(`ffprobe: no duration for ${file}`);
  return info.size / duration;
}

export interface Origin {
  port: number;
  byteRate: number;
  url(p: string): string;
  /** Responses to `p` still open (the upstream connections the proxy holds). */
  open(p: string): number;
  /** Requests ever made to `p`. */
  total(p: string): number;
  close(): Promise<void>;
}

const floor188 = (n: number): number => Math.floor(n / TS) * TS;

export async function startOrigin(file: string, byteRate: number): Promise<Origin> {
  const raw = await readFile(file);
  // Whole packets only, so the loop wraps on a packet boundary.
  const data = raw.subarray(0, floor188(raw.length));
  const epoch = performance.now();
  const livePos = (): number => floor188(((performance.now() - epoch) / 1000) * byteRate);
  const counts = new Map<string, { open: number; total: number }>();
  const sockets = new Set<import('node:net').Socket>();

  const slice = (offset: number, length: number): Buffer => sliceWrapped(data, offset, length);

  const server = http.createServer((req, res) => {
    const p = (req.url ?? '/').split('?')[0]!;
    if (!p.startsWith('/live/') || !p.endsWith('.ts')) {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    const c = counts.get(p) ?? { open: 0, total: 0 };
    counts.set(p, c);
    c.open++;
    c.total++;
    res.once('close', () => c.open--);
    res.writeHead(200, { 'Content-Type': 'video/mp2t', 'Cache-Control': 'no-cache' });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    // Join the live clock, with a short prefill; then write what is due every tick.
    let sent = Math.max(0, livePos() - floor188(PREFILL_S * byteRate));
    let blocked = false;
    const tick = (): void => {
      if (blocked || res.destroyed) return;
      const due = livePos();
      if (due - sent > MAX_DEBT_S * byteRate) sent = due - floor188(MAX_DEBT_S * byteRate);
      const n = due - sent;
      if (n <= 0) return;
      const chunk = slice(sent, n);
      sent += n;
      if (!res.write(chunk)) {
        blocked = true;
        res.once('drain', () => (blocked = false));
      }
    };
    tick();
    const timer = setInterval(tick, TICK_MS);
    res.once('close', () => clearInterval(timer));
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    byteRate,
    url: (p) => `http://127.0.0.1:${port}${p}`,
    open: (p) => counts.get(p)?.open ?? 0,
    total: (p) => counts.get(p)?.total ?? 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/**
 * Makes a live TS of `seconds` s at `muxrate` into `<tmp>/<name>/` and serves it; the origin
 * is closed by `cleanup` (the bench's set of stop functions).
 */
export async function originAt(tmp: string, name: string, muxrate: number, cleanup: Set<() => Promise<void>>, seconds = 10): Promise<Origin> {
  const dir = path.join(tmp, name);
  mkdirSync(dir, { recursive: true });
  const file = await makeMedia(dir, { seconds, muxrate });
  const origin = await startOrigin(file, await byteRateOf(file));
  cleanup.add(() => origin.close());
  return origin;
}
