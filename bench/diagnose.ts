// Ad-hoc: N viewers of one stream on a proxy for a while, then what the client saw (statuses,
// ends, rate spread) and what the proxy logged at warn/error, to tell a refusal from a stall.
// `node dist/bench/diagnose.js [viewers] [workers] [seconds]` (used for BENCHMARKS.md's
// admission finding of 2026-11-30).
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildClient, LoadClient } from './client.js';
import { originAt } from './origin.js';
import { ProxyProcess } from './servers.js';
import { sleep } from './stats.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const [n = 800, workers = 1, seconds = 20] = process.argv.slice(2).map(Number);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'm3u-diag-'));
const cleanup = new Set<() => Promise<void>>();
const origin = await originAt(tmp, 'o', 8_000_000, cleanup);
const bin = await buildClient(tmp);
const proxy = new ProxyProcess('diagnose', ROOT, { WORKERS: String(workers), DRAIN_TIMEOUT: '2' });
const logged = new Map<string, number>();
proxy.onLog = (line) => {
  if (!/"level":"(warn|error)"/.test(line)) return;
  const msg = /"message":"([^"]*)"/.exec(line)?.[1] ?? line.slice(0, 120);
  logged.set(msg, (logged.get(msg) ?? 0) + 1);
};
await proxy.start();
cleanup.add(() => proxy.stop());
const { stream_id: id } = await proxy.api<{ stream_id: string }>('POST', '/streams', { url: origin.url('/live/d.ts') });
const client = await LoadClient.start(bin);
await client.open('main', proxy.port, `/stream/${id}`, n, 100, 100, 15_000);
await sleep(5000);
await client.mark();
await sleep(seconds * 1000);
await client.mark();
const r = await client.report();
const g = r.groups.main!;
const statuses: Record<string, number> = {};
for (const s of g.statuses) statuses[s] = (statuses[s] ?? 0) + 1;
const rates = g.window_bytes.map((b) => b / r.window_s / origin.byteRate).sort((a, b) => a - b);
const at = (q: number): number | undefined => rates[Math.floor(rates.length * q)];
console.log(JSON.stringify({ n, workers, statuses, ended: g.ended, failed: g.failed, rate_p10: at(0.1), rate_p50: at(0.5), rate_p90: at(0.9) }));
await client.quit();
for (const fn of [...cleanup].reverse()) await fn();
for (const [m, c] of logged) console.log(`${c} × ${m}`);
process.exit(0);
