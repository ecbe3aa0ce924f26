// The floor: the least work a Node fan-out can do. One process, one upstream GET, and each
// upstream chunk written to every viewer's response, nothing else (no ring, no join points,
// no coordinator, no express). The proxy's figures are reported as ratios to this one.
//
//   node dist/bench/floor.js <upstreamUrl>     prints {"port":N} once it listens
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

const upstreamUrl = process.argv[2];
if (!upstreamUrl) {
  process.stderr.write('usage: node dist/bench/floor.js <upstreamUrl>\n');
  process.exit(2);
}

const viewers = new Set<http.ServerResponse>();

function openUpstream(): void {
  const req = http.get(upstreamUrl!, (up) => {
    up.on('data', (chunk: Buffer) => {
      for (const res of viewers) {
        if (res.writableLength < MAX_BACKLOG) res.write(chunk);
      }
    });
    up.once('close', () => setTimeout(openUpstream, 100));
  });
  req.once('error', () => setTimeout(openUpstream, 100));
}

const server = http.createServer((req, res) => {
  if (req.method !== 'GET' || !req.url?.startsWith('/stream')) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'Content-Type': 'video/mp2t', 'Cache-Control': 'no-cache' });
  viewers.add(res);
  res.once('close', () => viewers.delete(res));
});

// Node's default backlog (511) admits a burst of 1,000+ connects slowly; the proxy uses 4096.
server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => {
  openUpstream();
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port, pid: process.pid })}\n`);
});

const stop = (): void => {
  for (const res of viewers) res.destroy();
  server.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.resume();
