// A real player-like client for live TS: counts bytes, checks packet alignment as bytes
// arrive, can stop reading (a stalled player) and hang up.
import http from 'node:http';

export interface TsViewer {
  status: Promise<number>;
  headers: Promise<http.IncomingHttpHeaders>;
  /** Resolves with the first bytes once at least `n` have arrived. */
  firstBytes(n: number): Promise<Buffer>;
  bytes(): number;
  /** Offsets (in the stream) where a packet did not start with 0x47. */
  misaligned(): number;
  connectedAt: number;
  firstByteAt(): number;
  closed: Promise<void>;
  isClosed(): boolean;
  pause(): void;
  resume(): void;
  close(): void;
  body(): Buffer;
}

export function openViewer(url: string, opts: { keepBody?: boolean; headers?: Record<string, string> } = {}): TsViewer {
  let bytes = 0;
  let misaligned = 0;
  let firstAt = 0;
  let closed = false;
  const head: Buffer[] = [];
  let headLen = 0;
  const kept: Buffer[] = [];
  let res: http.IncomingMessage | null = null;
  const waiters: Array<{ n: number; resolve: (b: Buffer) => void }> = [];
  let resolveStatus!: (s: number) => void;
  let resolveHeaders!: (h: http.IncomingHttpHeaders) => void;
  let resolveClosed!: () => void;
  const status = new Promise<number>((r) => (resolveStatus = r));
  const headers = new Promise<http.IncomingHttpHeaders>((r) => (resolveHeaders = r));
  const closedP = new Promise<void>((r) => (resolveClosed = r));
  const connectedAt = Date.now();

  const req = http.get(url, { headers: opts.headers }, (r) => {
    res = r;
    resolveStatus(r.statusCode ?? 0);
    resolveHeaders(r.headers);
    r.on('data', (chunk: Buffer) => {
      if (firstAt === 0) firstAt = Date.now();
      // Every packet start (offset ≡ 0 mod 188) inside this chunk must be a sync byte.
      const first = (188 - (bytes % 188)) % 188;
      for (let i = first; i < chunk.length; i += 188) if (chunk[i] !== 0x47) misaligned++;
      bytes += chunk.length;
      if (headLen < 1 << 20) {
        head.push(chunk);
        headLen += chunk.length;
      }
      if (opts.keepBody) kept.push(chunk);
      for (const w of [...waiters]) {
        if (headLen >= w.n) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(Buffer.concat(head).subarray(0, w.n));
        }
      }
    });
    r.on('close', () => {
      closed = true;
      resolveClosed();
    });
  });
  req.on('error', () => {
    closed = true;
    resolveStatus(0);
    resolveClosed();
  });

  return {
    status, headers, connectedAt,
    firstBytes: (n) =>
      headLen >= n ? Promise.resolve(Buffer.concat(head).subarray(0, n)) : new Promise((resolve) => waiters.push({ n, resolve })),
    bytes: () => bytes,
    misaligned: () => misaligned,
    firstByteAt: () => firstAt,
    closed: closedP,
    isClosed: () => closed,
    pause: () => res?.pause(),
    resume: () => res?.resume(),
    close: () => req.destroy(),
    body: () => Buffer.concat(kept),
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls until `fn` is true; rejects with `what` after `timeoutMs`. Resolves with the wait in ms. */
export async function waitFor(fn: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const start = Date.now();
  while (!(await fn())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
  return Date.now() - start;
}
