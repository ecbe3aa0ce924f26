// Ad-hoc: N viewers on one proxy for a while, then what the client saw (statuses, ends, rate)
// and what the proxy logged (warnings and errors), to tell a refusal from a stall.
// node dist/bench/diagnose.js [viewers] [workers] [seconds]
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { buildClient, LoadClient } from './client.js';
import { originAt } from './channels.js';
import { sleep } from './stats.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const [n = 800, workers = 1, seconds = 20] = process.argv.slice(2).map(Number);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'm3u-diag-'));
const cleanup = new Set<() => Promise<void>>();
const origin = await originAt(tmp, 'o', 8_000_000, cleanup);
const bin = await buildClient(tmp);
const logFile = path.join(tmp, 'proxy.log');
const { openSync } = await import('node:fs');
const out = openSync(logFile, 'w');
const proc = spawn(process.execPath, ['dist/src/index.js'], { cwd: process.env.ROOT_DIR ?? ROOT, env: { ...process.env, HOST: '127.0.0.1', PORT: '0', WORKERS: String(workers), LOG_LEVEL: 'info', LOG_FORMAT: 'json', DRAIN_TIMEOUT: '2' }, stdio: ['ignore', out, out] });
let port = 0;
for (let i = 0; i < 100 && !port; i++) {
  await sleep(200);
  const m = /"port":(\d+)/.exec(readFileSync(logFile, 'utf8'));
  if (m) port = Number(m[1]);
}
const res = await fetch(`http://127.0.0.1:${port}/streams`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ url: origin.url('/live/d.ts') }) });
const { stream_id: id } = (await res.json()) as { stream_id: string };
const client = await LoadClient.start(bin);
await client.open('main', port, `/stream/${id}`, n, 100, 100, 15_000);
await sleep(5000);
await client.mark();
await sleep(seconds * 1000);
await client.mark();
const r = await client.report();
const g = r.groups.main!;
const statuses: Record<string, number> = {};
for (const s of g.statuses) statuses[s] = (statuses[s] ?? 0) + 1;
const rates = g.window_bytes.map((b) => b / r.window_s / origin.byteRate).sort((a, b) => a - b);
console.log(JSON.stringify({ n, workers, statuses, ended: g.ended, failed: g.failed, rate_p10: rates[Math.floor(rates.length * 0.1)], rate_p50: rates[Math.floor(rates.length / 2)], rate_p90: rates[Math.floor(rates.length * 0.9)] }));
await client.quit();
proc.kill('SIGTERM');
await sleep(3000);
for (const fn of cleanup) await fn();
const lines = readFileSync(logFile, 'utf8').split('\n').filter((l) => /"level":"(warn|error)"/.test(l));
const counts = new Map<string, number>();
for (const l of lines) {
  const msg = /"message":"([^"]*)"/.exec(l)?.[1] ?? l.slice(0, 120);
  counts.set(msg, (counts.get(msg) ?? 0) + 1);
}
for (const [m, c] of counts) console.log(`${c} × ${m}`);
process.exit(0);
