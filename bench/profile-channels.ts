// Ad-hoc: CPU profile of one worker serving many channels (issue 19, target 5).
// node dist/bench/profile-channels.js [channels] [perChannel] [workers]
import { mkdtempSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { originAt } from './channels.js';
import { buildClient, LoadClient } from './client.js';
import { busiestProfile } from './profile.js';
import { sampleTree, treeDelta } from './proc.js';
import { FloorProcess, ProxyProcess } from './servers.js';
import { fmt, pct, sleep } from './stats.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const [channels = 20, per = 3, workers = 1] = process.argv.slice(2).map(Number);
const tmp = mkdtempSync(path.join(os.tmpdir(), 'm3u-prof-'));
const cleanup = new Set<() => Promise<void>>();
const dir = path.join(tmp, 'cpuprof');
mkdirSync(dir);
const origin = await originAt(tmp, 'ch', 4_000_000, cleanup);
const bin = await buildClient(tmp);
const prof = process.env.NO_PROF ? [] : ['--cpu-prof', `--cpu-prof-dir=${dir}`];
const floorMode = process.env.FLOOR === '1';
const proxy = new ProxyProcess('prof', ROOT, { WORKERS: String(workers) }, prof);
const floor = new FloorProcess(ROOT);
let paths: string[] = [];
let port: number;
let pid: number;
if (floorMode) {
  await floor.start(origin.url('/live/idle.ts'));
  paths = Array.from({ length: channels }, (_, i) => `/stream/f${i}`);
  [port, pid] = [floor.port, floor.pid];
} else {
  await proxy.start();
  for (let i = 0; i < channels; i++) paths.push(`/stream/${(await proxy.api<{ stream_id: string }>('POST', '/streams', { url: origin.url(`/live/p${i}.ts`) })).stream_id}`);
  [port, pid] = [proxy.port, proxy.pid];
}
const client = await LoadClient.start(bin);
await Promise.all(paths.map((p, i) => client.open(`c${i}`, port, p, per, per, 0, 20_000)));
await sleep(3000);
console.log(`pids ${sampleTree(pid).map((x) => `${x.pid}:${x.comm}`).join(' ')}`);
const a = sampleTree(pid);
await sleep(15_000);
const b = sampleTree(pid);
const d = treeDelta(a, b);
console.log(`cores ${fmt(d.cpuS / 15, 2)}`);
await client.quit();
await proxy.stop();
await floor.stop();
for (const fn of cleanup) await fn();
const s = busiestProfile(dir);
if (s) for (const h of s.top) console.log(`${fmt(h.selfMs, 0).padStart(6)} ms ${pct(h.share, 1).padStart(7)}  ${h.name}  ${h.where}`);
process.exit(0);
