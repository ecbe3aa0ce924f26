// VOD passthrough: one upstream request per client request, the client's Range forwarded,
// the answer's length/range headers passed back, backpressure from the player to the
// upstream (VOD is never shared), and a body cut mid-way resumed with a Range (5 times).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { upstreamUnavailable } from '../../errors.js';
import type { StreamDefinition } from '../stream-definition.js';
import { openUpstream, tlsVerifyFor, UpstreamError } from '../sources/upstream.js';

export interface VodOptions {
  def: StreamDefinition;
  method: 'GET' | 'HEAD';
  range: string | undefined;
  res: ServerResponse;
  extraHeaders: Record<string, string>;
  defaultUserAgent: string;
  timeoutMs: number;
  /** Called once the response head is sent (the viewer is then connected). */
  onStart?: () => void;
  onBytes?: (n: number) => void;
}

const MAX_RESUMES = 5;
const PASSED_HEADERS = ['content-length', 'content-range', 'last-modified', 'etag'] as const;
const TYPES: Record<string, string> = {
  mp4: 'video/mp4', m4v: 'video/mp4', mkv: 'video/x-matroska', webm: 'video/webm',
  avi: 'video/x-msvideo', mov: 'video/quicktime', ts: 'video/mp2t',
};

function typeFromUrl(url: string): string {
  const ext = /\.([a-z0-9]+)$/i.exec(new URL(url).pathname)?.[1]?.toLowerCase();
  return (ext && TYPES[ext]) || 'application/octet-stream';
}

/** `bytes a-b/size` → [a, b]; null when the upstream sent none or `*`. */
function parseContentRange(v: string | undefined): [number, number] | null {
  const m = v ? /bytes\s+(\d+)-(\d+)\//i.exec(v) : null;
  return m ? [Number(m[1]), Number(m[2])] : null;
}

/** Resolves when the response is finished or abandoned; rejects (502) before its head only. */
export async function proxyVod(opts: VodOptions): Promise<void> {
  const { def, res, method } = opts;
  const ac = new AbortController();
  const onClose = (): void => ac.abort();
  res.once('close', onClose);
  const headers = (range: string | undefined): Record<string, string> => ({
    'User-Agent': def.userAgent ?? opts.defaultUserAgent,
    ...def.headers,
    ...(range ? { Range: range } : {}),
  });
  const open = (range: string | undefined): Promise<IncomingMessage> =>
    openUpstream({ url: def.url, method, headers: headers(range), timeoutMs: opts.timeoutMs, signal: ac.signal, tlsVerify: tlsVerifyFor(def), acceptErrors: true })
      .then(({ res: up }) => up);

  let upstream: IncomingMessage;
  try {
    upstream = await open(opts.range);
  } catch (err) {
    res.off('close', onClose);
    if (err instanceof UpstreamError && err.kind === 'aborted') return;
    throw upstreamUnavailable(`Upstream unavailable: ${err instanceof Error ? err.message : String(err)}`);
  }
  const status = upstream.statusCode ?? 502;
  if (status >= 400 && status !== 416) {
    upstream.resume();
    res.off('close', onClose);
    throw upstreamUnavailable(`Upstream answered HTTP ${status}`);
  }

  const head: Record<string, string> = {
    ...opts.extraHeaders,
    'Content-Type': String(upstream.headers['content-type'] ?? typeFromUrl(def.url)),
    'Accept-Ranges': 'bytes',
  };
  for (const h of PASSED_HEADERS) {
    const v = upstream.headers[h];
    if (typeof v === 'string') head[h] = v;
  }
  res.writeHead(status, head);
  opts.onStart?.();
  if (method === 'HEAD' || status === 416) {
    upstream.resume();
    res.end();
    return;
  }

  // Where the body should end, so a drop can be resumed from the right byte.
  const span = parseContentRange(head['content-range']);
  const length = Number(head['content-length'] ?? NaN);
  const start = span ? span[0] : 0;
  const end = span ? span[1] : Number.isFinite(length) ? length - 1 : NaN;
  let sent = 0;

  for (let resumes = 0; ; resumes++) {
    const complete = await pump(upstream, res, (n) => {
      sent += n;
      opts.onBytes?.(n);
    });
    if (complete || res.destroyed || ac.signal.aborted) break;
    const done = Number.isFinite(end) && start + sent > end;
    if (done) break;
    if (!Number.isFinite(end) || resumes >= MAX_RESUMES) return void res.destroy();
    try {
      upstream = await open(`bytes=${start + sent}-${end}`);
      if (upstream.statusCode !== 206) throw new Error(`resume answered HTTP ${upstream.statusCode}`);
    } catch {
      return void res.destroy();
    }
  }
  res.off('close', onClose);
  if (!res.destroyed) res.end();
}

/** Copies the body with backpressure; true when the upstream ended cleanly. */
function pump(upstream: IncomingMessage, res: ServerResponse, onBytes: (n: number) => void): Promise<boolean> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      res.off('drain', resume);
      resolve(ok);
    };
    const resume = (): void => void upstream.resume();
    upstream.on('data', (chunk: Buffer) => {
      onBytes(chunk.length);
      if (!res.write(chunk)) {
        upstream.pause();
        res.once('drain', resume);
      }
    });
    upstream.once('end', () => settle(upstream.complete));
    upstream.once('error', () => settle(false));
    upstream.once('close', () => settle(upstream.complete && upstream.readableEnded));
  });
}
