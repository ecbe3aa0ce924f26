// A request from a non-owner worker to the owner's internal relay listener (DESIGN.md §9):
// HLS files and shared fetches are asked of the lease holder, never of the origin.
import http from 'node:http';
import { RELAY_FROM_HEADER, RELAY_SECRET_HEADER } from '../sources/relay-source.js';

export interface OwnerRequest {
  /** The owner's relay listener, `host:port`. */
  address: string;
  /** The cluster's relay secret. */
  secret: string;
  /** This worker's id (the owner counts it as interest). */
  from: string;
  /** Path and query on the relay listener, e.g. `/files/{key}/{name}`. */
  path: string;
  /** Until the response head (an owner may wait for a first playlist). */
  timeoutMs: number;
  headers?: Record<string, string>;
  /** Aborts the request (the player hung up). */
  signal?: AbortSignal;
}

/**
 * The owner's answer, or 'not_owner' when it answered 409/403 or could not be reached (the
 * caller resolves the owner again). Other answers (200, 404, a 502 from the origin) are passed on.
 */
export function askOwner(req: OwnerRequest): Promise<http.IncomingMessage | 'not_owner'> {
  return new Promise((resolve) => {
    const up = http.get(`http://${req.address}${req.path}`, {
      headers: { ...req.headers, [RELAY_SECRET_HEADER]: req.secret, [RELAY_FROM_HEADER]: req.from },
      agent: false,
      signal: req.signal,
    });
    const timer = setTimeout(() => up.destroy(new Error('owner timeout')), req.timeoutMs);
    up.once('error', () => {
      clearTimeout(timer);
      resolve('not_owner');
    });
    up.once('response', (ans) => {
      clearTimeout(timer);
      const status = ans.statusCode ?? 502;
      if (status === 409 || status === 403) {
        ans.resume();
        return resolve('not_owner');
      }
      resolve(ans);
    });
  });
}

/** Reads a whole (small) answer, e.g. a playlist. */
export async function readBody(res: http.IncomingMessage, maxBytes = 8 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > maxBytes) {
      res.destroy();
      throw new Error(`answer larger than ${maxBytes} bytes`);
    }
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}
