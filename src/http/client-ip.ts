// The viewer's IP (API.md §4.1): the FIRST `X-Forwarded-For` entry when the socket peer is a
// trusted proxy (`TRUST_PROXY`, express syntax), else the peer itself. Express's own `req.ip`
// is the last untrusted hop, which is not what the Python proxy (and the editor) report.
import { isIP } from 'node:net';
import type { Request } from 'express';

type TrustFn = (addr: string, hop: number) => boolean;

export function clientIp(req: Request): string {
  const peer = req.socket.remoteAddress ?? 'unknown';
  const trust = req.app.get('trust proxy fn') as TrustFn | undefined;
  if (!trust || !trust(peer, 0)) return peer;
  const first = req.get('x-forwarded-for')?.split(',')[0]?.trim();
  // A forged or garbled header falls back to the peer rather than storing junk.
  return first && isIP(first) !== 0 ? first : peer;
}
