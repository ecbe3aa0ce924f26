// The container's HEALTHCHECK (`node dist/src/healthcheck.js`): asks this host's own /health
// with the same configuration the proxy reads (environment and .env, so API_TOKEN set in
// either is sent as X-API-Token). Exit 0 when /health answers 200 (healthy), 1 otherwise
// (503 degraded, refused, timed out, or a configuration error): the exit codes Docker and
// Podman expect from a health command. The slim image has no curl, and node is there anyway.
import http from 'node:http';
import { loadConfig } from './config.js';

const TIMEOUT_MS = 4000;

/** The address to reach a server listening on `host`: a wildcard bind is reached on loopback. */
function probeHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::' || host === '[::]') return '::1';
  return host.replace(/^\[(.*)\]$/, '$1');
}

/** GET http://<host>:<port>/health; resolves with the status code, or a reason on failure. */
function checkHealth(host: string, port: number, token: string | undefined): Promise<number | string> {
  return new Promise((resolve) => {
    const req = http.get(
      { host: probeHost(host), port, path: '/health', headers: token ? { 'X-API-Token': token } : {}, timeout: TIMEOUT_MS },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    req.on('error', (err) => resolve(err.message));
  });
}

let outcome: number | string;
try {
  const config = loadConfig();
  outcome = await checkHealth(config.host, config.port, config.apiToken);
} catch (err) {
  outcome = err instanceof Error ? err.message : String(err);
}
if (outcome !== 200) {
  process.stdout.write(`unhealthy: ${typeof outcome === 'number' ? `/health answered ${outcome}` : outcome}\n`);
}
process.exit(outcome === 200 ? 0 : 1);
