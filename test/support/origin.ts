// A real local HTTP origin for the proxy's tests: an endless live MPEG-TS paced at its true
// byte rate, a range-capable mp4, and a handful of misbehaving routes (stall, early close,
// slow headers, redirects, arbitrary statuses). It counts open/total requests per path so
// tests can assert that the proxy opens exactly one upstream and closes it when viewers leave.
import { readFileSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { makeLiveTs, makeMp4, tsByteRate } from './media.js';
import { stampPacket } from './stamps.js';

const TS_PACKET = 188;
const TICK_MS = 20;
const POLL_MS = 20;
const DEFAULT_CLOSE_AFTER_BYTES = TS_PACKET * 100;

export interface Origin {
  /** The port the origin listens on (127.0.0.1). */
  readonly port: number;
  /** `http://127.0.0.1:<port><path>`. */
  url(path: string): string;
  /** Requests to `path` (query ignored) whose response has not closed yet. */
  openConnections(path: string): number;
  /**
   * Open requests to `path` whose client process is reading: the receive queue of its socket
   * (read from /proc/net/tcp) was empty, or shrank, within the last second. A frozen
   * (SIGSTOPped) process keeps its connection open and reads nothing, but the kernel keeps
   * taking the origin's bytes into its socket buffers for seconds (the origin's writes are not
   * held back meanwhile), so only the client's queue tells a live source from such a husk.
   * A connection is counted at first sight and afterwards when it was consuming at this call
   * and the previous one: a husk that wakes, takes one read and closes at once (a resumed owner
   * whose data path finds its lease deadline passed) is no source. Meant to be sampled often
   * (every 10–25 ms). Where /proc/net/tcp cannot be read, every open request counts.
   */
  consumingConnections(path: string): number;
  /** Requests ever received for `path` (query ignored). */
  totalRequests(path: string): number;
  /** Request headers of the latest request for `path` (query ignored). */
  lastHeaders(path: string): http.IncomingHttpHeaders | undefined;
  /** Resolves with the elapsed ms once openConnections(path) === n; rejects after timeoutMs. */
  waitForOpen(path: string, n: number, timeoutMs: number): Promise<number>;
  /** Resolves with the elapsed ms once openConnections(path) === 0; rejects after timeoutMs. */
  waitForClosedAll(path: string, timeoutMs: number): Promise<number>;
  /** Stops listening and destroys every open socket. */
  close(): Promise<void>;
}

interface LiveSource {
  /** The TS file, truncated to a whole number of 188-byte packets so wrapping stays aligned. */
  data: Buffer;
  /** Real bytes per second of the file. */
  byteRate: number;
}

interface Mp4Source {
  data: Buffer;
  lastModified: string;
  /** Default video/mp4. */
  contentType?: string;
}

export interface OriginOptions {
  /** Extra VOD files served with Range support: URL path → local file (e.g. `/A.mp4`). */
  files?: Record<string, string>;
}

interface PathStats {
  open: number;
  responses: Set<http.ServerResponse>;
  total: number;
  lastHeaders?: http.IncomingHttpHeaders;
}

/** Path without its query string: the key for every per-path counter. */
function stripQuery(p: string): string {
  const q = p.indexOf('?');
  return q === -1 ? p : p.slice(0, q);
}

const floorToPacket = (n: number): number => Math.floor(n / TS_PACKET) * TS_PACKET;

/** `length` bytes of `data` starting at `offset`, wrapping around its end as often as needed. */
export function sliceWrapped(data: Buffer, offset: number, length: number): Buffer {
  let start = offset % data.length;
  if (start + length <= data.length) return data.subarray(start, start + length);
  const parts: Buffer[] = [];
  let left = length;
  while (left > 0) {
    const n = Math.min(left, data.length - start);
    parts.push(data.subarray(start, start + n));
    left -= n;
    start = 0;
  }
  return Buffer.concat(parts, length);
}

function sendText(res: http.ServerResponse, status: number, body: string, extra: http.OutgoingHttpHeaders = {}): void {
  // 204/304 must not carry a body; Node would otherwise complain.
  const text = status === 204 || status === 304 ? '' : body;
  res.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
    ...extra,
  });
  res.end(text);
}

/**
 * Loops the TS file forever at its real byte rate, paced by the wall clock: every tick writes
 * the 188-aligned bytes due since the start. Under backpressure it waits for 'drain'; debt
 * beyond 1 s is dropped (skipping content, like a real live feed) rather than burst.
 */
/**
 * Receive queues (bytes not yet read by the process) of the IPv4 loopback sockets connected
 * to `port`, by their local port: the clients' side of the origin's connections. Null when
 * /proc/net/tcp cannot be read.
 */
function peerReceiveQueues(port: number): Map<number, number> | null {
  const out = new Map<number, number>();
  let text: string;
  try {
    text = readFileSync('/proc/net/tcp', 'latin1');
  } catch {
    return null;
  }
  const remote = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 5 || !f[2]!.endsWith(remote) || f[3] !== '01') continue; // 01: established
    out.set(parseInt(f[1]!.slice(f[1]!.indexOf(':') + 1), 16), parseInt(f[4]!.split(':')[1]!, 16));
  }
  return out;
}

/** How a live response misbehaves after a while (providers do both). */
interface LiveFault {
  /** A clean end of the response after this many ms (a provider rotating connections). */
  closeMs?: number;
  /** No more bytes after this many ms, the connection left open (a frozen provider). */
  stallMs?: number;
  /** Each write followed by a stamp packet naming this connection (stamps.ts). */
  stampConn?: number;
}

/** The request number of each response on its path (1 = the path's first request). */
const requestNumber = new WeakMap<http.ServerResponse, number>();

function streamLive(
  req: http.IncomingMessage, res: http.ServerResponse, src: LiveSource, speed = 1, fault: LiveFault = {}, type = 'video/mp2t',
): void {
  res.writeHead(200, { 'Content-Type': type, 'Cache-Control': 'no-cache' });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  res.flushHeaders();
  const start = performance.now();
  const rate = src.byteRate * speed;
  const maxBurst = Math.max(TS_PACKET, floorToPacket(rate));
  let sent = 0; // bytes of the endless stream already written; always a multiple of 188
  let waitingForDrain = false;
  let stampCc = 0;
  const tick = (): void => {
    if (waitingForDrain || res.destroyed || res.writableEnded) return;
    const elapsed = performance.now() - start;
    if (fault.closeMs !== undefined && elapsed >= fault.closeMs) return void res.end();
    if (fault.stallMs !== undefined && elapsed >= fault.stallMs) return;
    const due = floorToPacket(((performance.now() - start) / 1000) * rate);
    if (due - sent > maxBurst) sent = due - maxBurst;
    const n = due - sent;
    if (n <= 0) return;
    let chunk = sliceWrapped(src.data, sent, n);
    sent += n;
    if (fault.stampConn !== undefined) chunk = Buffer.concat([chunk, stampPacket(fault.stampConn, stampCc++)]);
    if (!res.write(chunk)) {
      waitingForDrain = true;
      res.once('drain', () => {
        waitingForDrain = false;
      });
    }
  };
  const timer = setInterval(tick, TICK_MS);
  res.once('close', () => clearInterval(timer));
}

/** Range support for a single `bytes=a-b` / `bytes=a-` / `bytes=-n`; anything else is ignored (full 200). */
type RangeResult = { kind: 'none' } | { kind: 'unsatisfiable' } | { kind: 'range'; start: number; end: number };

function parseRange(header: string | undefined, size: number): RangeResult {
  if (!header) return { kind: 'none' };
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return { kind: 'none' }; // malformed or multi-range
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return { kind: 'unsatisfiable' };
    return { kind: 'range', start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  if (m[2] !== '' && Number(m[2]) < start) return { kind: 'none' }; // invalid: RFC 9110 says ignore
  if (start >= size) return { kind: 'unsatisfiable' };
  const end = m[2] === '' ? size - 1 : Number(m[2]);
  return { kind: 'range', start, end: Math.min(end, size - 1) };
}

function serveMp4(req: http.IncomingMessage, res: http.ServerResponse, src: Mp4Source, dropAfter = 0): void {
  const size = src.data.length;
  const common: http.OutgoingHttpHeaders = {
    'Accept-Ranges': 'bytes',
    'Content-Type': src.contentType ?? 'video/mp4',
    'Last-Modified': src.lastModified,
  };
  const range = parseRange(req.headers.range, size);
  if (range.kind === 'unsatisfiable') {
    res.writeHead(416, { ...common, 'Content-Range': `bytes */${size}`, 'Content-Length': 0 });
    res.end();
    return;
  }
  const [status, start, end] = range.kind === 'range' ? [206, range.start, range.end] : [200, 0, size - 1];
  const headers: http.OutgoingHttpHeaders = { ...common, 'Content-Length': end - start + 1 };
  if (status === 206) headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
  res.writeHead(status, headers);
  if (req.method === 'HEAD') res.end();
  else if (dropAfter > 0 && end - start + 1 > dropAfter) {
    // A connection cut mid-body: headers promised more than arrives.
    res.write(src.data.subarray(start, start + dropAfter), () => res.destroy());
  } else res.end(src.data.subarray(start, end + 1));
}

/** 200 headers, then silence until either side closes the socket. */
function serveStall(req: http.IncomingMessage, res: http.ServerResponse): void {
  res.writeHead(200, { 'Content-Type': 'video/mp2t', 'Cache-Control': 'no-cache' });
  if (req.method === 'HEAD') res.end();
  else res.flushHeaders();
}

/** Exactly the first N bytes of the TS (wrapping if N exceeds the file), then a clean end (chunked). */
function serveCloseAfter(res: http.ServerResponse, query: URLSearchParams, src: LiveSource): void {
  const raw = query.get('bytes');
  const bytes = raw === null ? DEFAULT_CLOSE_AFTER_BYTES : Number(raw);
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    sendText(res, 400, `bad bytes=${raw}\n`);
    return;
  }
  res.writeHead(200, { 'Content-Type': 'video/mp2t', 'Cache-Control': 'no-cache' });
  res.end(bytes === 0 ? undefined : sliceWrapped(src.data, 0, bytes));
}

const PLAYLIST = [
  '#EXTM3U',
  '#EXT-X-VERSION:3',
  '#EXT-X-TARGETDURATION:1',
  '#EXT-X-MEDIA-SEQUENCE:0',
  '#EXTINF:1.0,',
  '/close-after.ts?bytes=18800',
  '#EXT-X-ENDLIST',
  '',
].join('\n');

const CONTENT_TYPES: Record<string, string> = { '.mkv': 'video/x-matroska', '.srt': 'application/x-subrip', '.mp4': 'video/mp4' };

export async function startOrigin(opts: OriginOptions = {}): Promise<Origin> {
  const tsPath = await makeLiveTs();
  const mp4Path = await makeMp4();
  const [tsData, byteRate, mp4Data, mp4Stat] = await Promise.all([
    readFile(tsPath),
    tsByteRate(tsPath),
    readFile(mp4Path),
    stat(mp4Path),
  ]);
  const live: LiveSource = { data: tsData.subarray(0, floorToPacket(tsData.length)), byteRate };
  const variants = new Map<string, Promise<LiveSource>>();
  const variantSource = (kind: 'silent' | 'novideo'): Promise<LiveSource> => {
    let p = variants.get(kind);
    if (!p) {
      p = (async () => {
        const file = await makeLiveTs(kind === 'silent' ? { audio: 'silent' } : { video: false });
        const [data, rate] = await Promise.all([readFile(file), tsByteRate(file)]);
        return { data: data.subarray(0, floorToPacket(data.length)), byteRate: rate };
      })();
      variants.set(kind, p);
    }
    return p;
  };
  if (live.data.length === 0 || live.data[0] !== 0x47) {
    throw new Error(`origin: ${tsPath} is not an MPEG-TS file (first byte ${live.data[0]})`);
  }
  const mp4: Mp4Source = { data: mp4Data, lastModified: mp4Stat.mtime.toUTCString() };
  const files = new Map<string, Mp4Source>();
  for (const [urlPath, file] of Object.entries(opts.files ?? {})) {
    const [data, st] = await Promise.all([readFile(file), stat(file)]);
    const ext = urlPath.slice(urlPath.lastIndexOf('.'));
    files.set(urlPath, { data, lastModified: st.mtime.toUTCString(), contentType: CONTENT_TYPES[ext] ?? 'application/octet-stream' });
  }

  const stats = new Map<string, PathStats>();
  const readers = new WeakMap<http.ServerResponse, { queue: number; readAt: number; consuming: boolean }>();
  let singleOpen = 0;
  const statsFor = (p: string): PathStats => {
    let s = stats.get(p);
    if (!s) {
      s = { open: 0, responses: new Set(), total: 0 };
      stats.set(p, s);
    }
    return s;
  };

  const route = (req: http.IncomingMessage, res: http.ServerResponse, pathname: string, query: URLSearchParams): void => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendText(res, 405, 'method not allowed\n', { Allow: 'GET, HEAD' });
      return;
    }
    if (pathname === '/live.ts' || pathname.startsWith('/live/')) {
      // `?speed=N` paces at N times the real rate (fills a stalled client's buffers sooner).
      // `?close_ms=N` ends the response cleanly after N ms; `?stall_ms=N` stops sending after N ms.
      // `?stamp=1` follows every write with a stamp packet (stamps.ts).
      const speed = Number(query.get('speed') ?? '1');
      // `?type=text/html`: good MPEG-TS under a wrong label, as some providers send it.
      const ms = (name: string): number | undefined => {
        const v = Number(query.get(name) ?? NaN);
        return Number.isFinite(v) && v >= 0 ? v : undefined;
      };
      return streamLive(req, res, live, Number.isFinite(speed) && speed > 0 ? speed : 1, {
        ...(ms('close_ms') !== undefined ? { closeMs: ms('close_ms') } : {}),
        ...(ms('stall_ms') !== undefined ? { stallMs: ms('stall_ms') } : {}),
        ...(query.get('stamp') === '1' ? { stampConn: requestNumber.get(res) ?? 0 } : {}),
      }, query.get('type') ?? 'video/mp2t');
    }
    // A provider's error page with a 200 (a non-media answer).
    if (pathname === '/html.ts') {
      return sendText(res, 200, '<!DOCTYPE html><html><body>Subscription expired</body></html>\n', { 'Content-Type': 'text/html; charset=utf-8' });
    }
    // A provider that allows one connection per account: a second one, to any channel under
    // `/single/`, is refused with 458 (Xtream's "max connections") while the first is open.
    if (pathname.startsWith('/single/')) {
      if (singleOpen > 0) return sendText(res, 458, 'max connections reached\n');
      singleOpen++;
      res.once('close', () => singleOpen--);
      return streamLive(req, res, live);
    }
    // `/silent/*`: the live TS with digital silence for audio; `/novideo/*`: audio only.
    // Made on first use (most tests never ask for them).
    const variant = /^\/(silent|novideo)\//.exec(pathname)?.[1] as 'silent' | 'novideo' | undefined;
    if (variant) {
      void variantSource(variant).then((src) => {
        if (!res.destroyed) streamLive(req, res, src);
      }, (err: unknown) => sendText(res, 500, `origin error: ${String(err)}\n`));
      return;
    }
    if (pathname === '/stall.ts') return serveStall(req, res);
    if (pathname === '/close-after' || pathname === '/close-after.ts') return serveCloseAfter(res, query, live);
    if (pathname === '/redirect') {
      const to = query.get('to') ?? '/live.ts';
      return sendText(res, 302, `redirect to ${to}\n`, { Location: to });
    }
    if (pathname === '/playlist.m3u8') {
      res.writeHead(200, {
        'Content-Type': 'application/vnd.apple.mpegurl',
        'Content-Length': Buffer.byteLength(PLAYLIST),
      });
      res.end(PLAYLIST);
      return;
    }
    if (pathname === '/slow-headers.ts') {
      const ms = Number(query.get('ms') ?? '0');
      const delay = Number.isFinite(ms) && ms > 0 ? ms : 0;
      const timer = setTimeout(() => {
        if (!res.destroyed) streamLive(req, res, live);
      }, delay);
      res.once('close', () => clearTimeout(timer));
      return;
    }
    const statusMatch = /^\/status\/(\d{3})$/.exec(pathname);
    if (statusMatch) {
      const status = Number(statusMatch[1]);
      if (status < 200 || status > 599) return sendText(res, 400, `unsupported status ${status}\n`);
      return sendText(res, status, `status ${status}\n`);
    }
    // `/flaky.mp4?drop=N`: the body is cut after N bytes on every request that asks for more.
    const file = files.get(pathname);
    if (file) return serveMp4(req, res, file);
    if (pathname === '/flaky.mp4') return serveMp4(req, res, mp4, Number(query.get('drop') ?? '0') || 0);
    if (pathname.endsWith('.mp4')) return serveMp4(req, res, mp4);
    sendText(res, 404, `not found: ${pathname}\n`);
  };

  const server = http.createServer((req, res) => {
    const rawUrl = req.url ?? '/';
    // Split by hand: new URL('//x', base) would treat "x" as a host.
    const pathname = stripQuery(rawUrl);
    const query = new URLSearchParams(rawUrl.slice(pathname.length + 1));
    const s = statsFor(pathname);
    s.open += 1;
    s.total += 1;
    s.lastHeaders = req.headers;
    s.responses.add(res);
    requestNumber.set(res, s.total);
    // 'close' fires both when the response finishes and when the client goes away early.
    res.once('close', () => {
      s.open -= 1;
      s.responses.delete(res);
    });
    try {
      route(req, res, pathname, query);
    } catch (err) {
      if (!res.headersSent) sendText(res, 500, `origin error: ${String(err)}\n`);
      else res.destroy(err instanceof Error ? err : new Error(String(err)));
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;

  const waitUntil = (path: string, n: number, timeoutMs: number): Promise<number> => {
    const key = stripQuery(path);
    const started = performance.now();
    return new Promise<number>((resolve, reject) => {
      const check = (): void => {
        const elapsed = performance.now() - started;
        const open = stats.get(key)?.open ?? 0;
        if (open === n) return resolve(Math.round(elapsed));
        if (elapsed >= timeoutMs) {
          return reject(
            new Error(`origin: timed out after ${timeoutMs} ms waiting for ${n} open connection(s) on ${key} (still ${open})`),
          );
        }
        setTimeout(check, POLL_MS);
      };
      check();
    });
  };

  let closed: Promise<void> | undefined;
  return {
    port,
    url: (path) => `http://127.0.0.1:${port}${path}`,
    openConnections: (path) => stats.get(stripQuery(path))?.open ?? 0,
    consumingConnections: (path) => {
      const now = performance.now();
      const queues = peerReceiveQueues(port);
      let n = 0;
      for (const res of stats.get(stripQuery(path))?.responses ?? []) {
        if (!queues) {
          n++; // no /proc/net/tcp (not Linux): every open request counts, the safe side
          continue;
        }
        // Not established any more: the client closed its end; the origin sees it shortly.
        const queue = queues.get(res.socket?.remotePort ?? -1);
        if (queue === undefined) continue;
        const seen = readers.get(res);
        const readAt = !seen || queue === 0 || queue < seen.queue ? now : seen.readAt;
        const consuming = now - readAt < 1000;
        readers.set(res, { queue, readAt, consuming });
        // Counted at first sight, then only when consuming at two samples in a row: a client
        // that wakes, takes one read and closes at once (a resumed owner whose data path found
        // its lease deadline passed, dropping what it read) is no source.
        if (consuming && (!seen || seen.consuming)) n++;
      }
      return n;
    },
    totalRequests: (path) => stats.get(stripQuery(path))?.total ?? 0,
    lastHeaders: (path) => stats.get(stripQuery(path))?.lastHeaders,
    waitForOpen: (path, n, timeoutMs) => waitUntil(path, n, timeoutMs),
    waitForClosedAll: (path, timeoutMs) => waitUntil(path, 0, timeoutMs),
    close: () => {
      closed ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Live and stall responses never end on their own: cut every socket.
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
