// The floor: the least work a Node fan-out can do. One process, one upstream GET per channel,
// and each upstream chunk written to every viewer of that channel, nothing else (no ring, no
// join points, no coordinator, no express). The proxy's figures are reported as ratios to it.
//
//   node dist/bench/floor.js <upstreamUrl>     prints {"port":N} once it listens
//
// GET /stream plays <upstreamUrl> (opened at start); GET /stream/<name> plays the sibling
// <name>.ts of <upstreamUrl>, opened on its first viewer and kept (the many-channels run).
//
// FLOOR_COALESCE_MS=<ms> (default 0): the upstream reads of each <ms> are joined and written
// as one chunk, as the proxy does (CHANNEL_COALESCE_MS): the least a coalescing fan-out does.
//
// It exits on SIGTERM or when its stdin closes (so it never outlives the bench).
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The only concession to reality: a viewer whose unsent backlog passes this skips chunks
 * instead of growing it without bound, so a saturated floor's memory stays sane. Below
 * saturation no viewer ever comes near it.
 */
const MAX_BACKLOG = 4 * 1024 * 1024;

const COALESCE_MS = Number(process.env.FLOOR_COALESCE_MS ?? 0);
const upstreamUrl = process.argv[2];
if (!upstreamUrl) {
  process.stderr.write('usage: node dist/bench/floor.js <upstreamUrl>\n');
  process.exit(2);
}

/** Viewers per upstream URL. */
const channels = new Map<string, Set<http.ServerResponse>>();

function openUpstream(url: string, viewers: Set<http.ServerResponse>): void {
  const req = http.get(url, (up) => {
    const send = (chunk: Buffer): void => {
      for (const res of viewers) {
        if (res.writableLength < MAX_BACKLOG) res.write(chunk);
      }
    };
    let held: Buffer[] = [];
    up.on('data', (chunk: Buffer) => {
      if (COALESCE_MS <= 0) return send(chunk);
      if (held.push(chunk) === 1) {
        setTimeout(() => {
          const all = Buffer.concat(held);
          held = [];
          send(all);
        }, COALESCE_MS);
      }
    });
    up.once('close', () => setTimeout(() => openUpstream(url, viewers), 100));
  });
  req.once('error', () => setTimeout(() => openUpstream(url, viewers), 100));
}

function channel(url: string): Set<http.ServerResponse> {
  let viewers = channels.get(url);
  if (!viewers) {
    viewers = new Set();
    channels.set(url, viewers);
    openUpstream(url, viewers);
  }
  return viewers;
}

const NAME = /^\/stream\/([A-Za-z0-9_-]{1,64})$/;

const server = http.createServer((req, res) => {
  const p = (req.url ?? '').split('?')[0]!;
  const named = NAME.exec(p);
  if (req.method !== 'GET' || (p !== '/stream' && !named)) {
    res.writeHead(404).end();
    return;
  }
  const viewers = channel(named ? new URL(`${named[1]}.ts`, upstreamUrl).href : upstreamUrl!);
  res.writeHead(200, { 'Content-Type': 'video/mp2t', 'Cache-Control': 'no-cache' });
  viewers.add(res);
  res.once('close', () => viewers.delete(res));
});

// Node's default backlog (511) admits a burst of 1,000+ connects slowly; the proxy uses 4096.
server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => {
  channel(upstreamUrl);
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port, pid: process.pid })}\n`);
});

const stop = (): void => {
  for (const viewers of channels.values()) for (const res of viewers) res.destroy();
  server.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
