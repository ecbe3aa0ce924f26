// A real HTTP endpoint for webhooks and the failover resolver: records every POST (path,
// headers, JSON body, arrival time) and answers per path: `/ok/*` 200, `/fail/*` 500,
// `/hang/*` never answers, `/resolver/*` the next answer queued with `resolveNext`.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { waitFor } from './ts-viewer.js';

export interface Received {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown>;
  at: number;
}

export interface Sink {
  url(path: string): string;
  received: Received[];
  /** Bodies received on `path` (query ignored). */
  on(path: string): Received[];
  /** Events of a type received on `path`, by their envelope. */
  events(path: string, type?: string): Array<Record<string, unknown> & { data: Record<string, unknown> }>;
  waitFor(what: string, fn: () => boolean, timeoutMs?: number): Promise<number>;
  /** The answers `/resolver/*` gives, in order (then `{next_url: null}`). */
  resolveNext(...answers: Array<{ status?: number; body: unknown }>): void;
  close(): Promise<void>;
}

export async function startSink(): Promise<Sink> {
  const received: Received[] = [];
  const answers: Array<{ status?: number; body: unknown }> = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = (req.url ?? '/').split('?')[0]!;
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      } catch {
        body = { unparsable: Buffer.concat(chunks).toString('utf8') };
      }
      received.push({ path, headers: req.headers, body, at: Date.now() });
      if (path.startsWith('/hang/')) return; // keeps the socket open until the client gives up
      if (path.startsWith('/fail/')) return void res.writeHead(500).end('boom');
      if (path.startsWith('/resolver/')) {
        const a = answers.shift() ?? { body: { next_url: null } };
        res.writeHead(a.status ?? 200, { 'Content-Type': 'application/json' });
        return void res.end(JSON.stringify(a.body));
      }
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"ok":true}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const on = (path: string) => received.filter((r) => r.path === path.split('?')[0]);
  return {
    url: (path) => `http://127.0.0.1:${port}${path}`,
    received,
    on,
    events: (path, type) =>
      on(path).map((r) => r.body as Record<string, unknown> & { data: Record<string, unknown> })
        .filter((b) => type === undefined || b.event_type === type),
    waitFor: (what, fn, timeoutMs = 10_000) => waitFor(fn, timeoutMs, what),
    resolveNext: (...a) => void answers.push(...a),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
