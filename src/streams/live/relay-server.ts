// Each worker's internal listener for relay connections from other workers (and hosts):
// `GET /relay/{pool_key}:{slot}` with the cluster's relay secret (never served without it).
// Only the owner of that source answers 200; anyone else 409, so the caller looks again.
import http from 'node:http';
import { isAppError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { safeEqual } from '../../safe-equal.js';
import { RELAY_SECRET_HEADER } from '../sources/relay-source.js';
import type { StreamEngine } from '../stream-engine.js';

export interface RelayServerDeps {
  engine: StreamEngine;
  /** Other routes of the listener (HLS files, shared fetches, broadcasts); false when not theirs. */
  extra?: (req: http.IncomingMessage, res: http.ServerResponse) => Promise<boolean>;
  secret: () => Promise<string>;
  /** Reads the secret from the coordinator again (throttled): ours may be the stale one. */
  rereadSecret?: () => Promise<string>;
  logger: Logger;
}

function json(res: http.ServerResponse, status: number, body: object): void {
  if (res.headersSent) return void res.destroy();
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}

/** Whether `given` is the relay secret; on a mismatch the secret is read again once. */
async function secretMatches(given: unknown, secret: () => Promise<string>, reread?: () => Promise<string>): Promise<boolean> {
  if (typeof given !== 'string') return false;
  if (safeEqual(given, await secret())) return true;
  // After the coordinator came back empty the peer may hold the value agreed since.
  return reread ? safeEqual(given, await reread()) : false;
}

export function createRelayServer({ engine, extra, secret, rereadSecret, logger }: RelayServerDeps): http.Server {
  return http.createServer((req, res) => {
    void (async () => {
      const m = /^\/relay\/([A-Za-z0-9_:.-]{1,256})$/.exec(req.url ?? '');
      const given = req.headers[RELAY_SECRET_HEADER];
      if (!(await secretMatches(given, secret, rereadSecret))) {
        return json(res, 403, { detail: 'Relay secret required', code: 'AUTH_INVALID' });
      }
      // Any method: broadcasts ask their owner with POST (start, stop, status, delete, list).
      if (!m && extra && (await extra(req, res))) return;
      if (req.method !== 'GET' || !m) return json(res, 404, { detail: 'Not found', code: 'NOT_FOUND' });
      const result = await engine.serveRelay(m[1]!, res);
      if (result === 'not_owner') json(res, 409, { detail: 'Not the owner', code: 'NOT_OWNER' });
    })().catch((err: unknown) => {
      if (isAppError(err)) return json(res, err.status, err.toJSON());
      logger.error('relay request failed', { error: String(err) });
      json(res, 500, { detail: 'Internal relay error', code: 'INTERNAL' });
    });
  });
}
