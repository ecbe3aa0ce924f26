// The non-owner side of a stream: one relay connection to the owner worker (this host or
// another), feeding the local Channel. Cost grows with workers × streams, never viewers.
import http from 'node:http';
import type { Channel } from '../live/channel.js';

export const RELAY_SECRET_HEADER = 'x-relay-secret';
export const RELAY_FROM_HEADER = 'x-relay-from';

export type RelayEnd =
  /** The owner ended the stream cleanly (source gone or deleted). */
  | 'ended'
  /** The owner's source failed before its first byte (its 502 detail is passed on). */
  | 'failed'
  /** The owner is not the owner (any more): resolve again. */
  | 'not_owner'
  /** The connection failed or dropped (owner died?): try the lease, then relay again. */
  | 'lost'
  /** The owner refused our relay secret (one of us holds a stale one): read it again. */
  | 'forbidden';

export interface RelaySourceOptions {
  /** The session key `{pool_key}:{slot}` (safe characters only). */
  key: string;
  address: string; // host:port
  secret: string;
  from: string;
  channel: Channel;
  connectTimeoutMs: number;
  onEnd: (how: RelayEnd, detail: string) => void;
}

export class RelaySource {
  private req: http.ClientRequest | null = null;
  private done = false;
  /** When the relay last showed life (opened, or bytes arrived), in ms since the epoch. */
  lastActivityAt = Date.now();

  constructor(private readonly opts: RelaySourceOptions) {}

  get address(): string {
    return this.opts.address;
  }

  start(): void {
    const { address, key, secret, from, channel, connectTimeoutMs } = this.opts;
    const req = http.get(`http://${address}/relay/${key}`, {
      headers: { [RELAY_SECRET_HEADER]: secret, [RELAY_FROM_HEADER]: from },
      agent: false,
    });
    this.req = req;
    const timer = setTimeout(() => req.destroy(new Error('relay connect timeout')), connectTimeoutMs);
    req.once('response', (res) => {
      clearTimeout(timer);
      if (res.statusCode === 502) {
        const body: Buffer[] = [];
        res.on('data', (c: Buffer) => body.push(c));
        res.once('end', () => this.finish('failed', detailOf(Buffer.concat(body))));
        return;
      }
      if (res.statusCode !== 200) {
        res.resume();
        const how = res.statusCode === 409 ? 'not_owner' : res.statusCode === 403 ? 'forbidden' : 'lost';
        return this.finish(how, `relay answered HTTP ${res.statusCode}`);
      }
      // The owner's channel type (raw sources keep their upstream's type across workers).
      channel.sourceContentType = res.headers['content-type'] ?? null;
      res.on('data', (chunk: Buffer) => {
        this.lastActivityAt = Date.now();
        channel.write(chunk);
      });
      res.once('end', () => this.finish('ended', 'the owner ended the stream'));
      res.once('aborted', () => this.finish('lost', 'relay connection dropped'));
      res.once('error', (err) => this.finish('lost', err.message));
      res.once('close', () => this.finish(res.complete ? 'ended' : 'lost', 'relay connection closed'));
    });
    req.once('error', (err) => {
      clearTimeout(timer);
      this.finish('lost', err.message);
    });
  }

  stop(): void {
    this.done = true;
    this.req?.destroy();
  }

  private finish(how: RelayEnd, detail: string): void {
    if (this.done) return;
    this.done = true;
    this.req?.destroy();
    this.opts.onEnd(how, detail);
  }
}

function detailOf(body: Buffer): string {
  try {
    return String((JSON.parse(body.toString('utf8')) as { detail?: unknown }).detail ?? 'the owner could not start the stream');
  } catch {
    return 'the owner could not start the stream';
  }
}
