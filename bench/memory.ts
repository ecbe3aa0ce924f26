// Memory over a process lifetime: cycles of N viewers joining and leaving one new stream each
// (the stream deleted in between), RSS after each cycle, then a heap snapshot of every worker
// counted by constructor: a finished stream must leave no viewer, socket, channel or session.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { LoadClient } from './client.js';
import type { Origin } from './origin.js';
import { sampleTree, treeRssKiB } from './proc.js';
import { ProxyProcess } from './servers.js';
import { fmt, sleep } from './stats.js';

export interface MemoryCycle {
  cycle: number;
  viewers: number;
  connected: number;
  /** Tree RSS with the N viewers playing, and 3 s after they left and the stream was deleted (KiB). */
  rssPlayingKiB: number;
  rssAfterKiB: number;
  /** The same, SETTLE_MS after the deletion: what the processes gave back once idle (KiB). */
  rssSettledKiB?: number;
}

export interface MemoryResult {
  workers: number;
  cycles: MemoryCycle[];
  /** RSS after the last cycle ÷ RSS after the first (3 s after each: the judged figure). */
  growth: number;
  /** The same, read SETTLE_MS after each cycle. */
  growthSettled?: number;
  /** Objects of these classes still alive in the workers' heaps after the last cycle. */
  retained: Record<string, number>;
  heapSnapshots: number;
}

/** When RSS is read a second time after a cycle: garbage V8 gives back once a process idles is gone by then. */
const SETTLE_MS = 12_000;

/** Classes a finished stream must not leave behind. */
// (`Channel` is not among them: node:diagnostics_channel has a class of that name too; every TS
// channel owns one TsPacketizer.)
const WATCHED = ['Viewer', 'LiveSession', 'HttpSource', 'RelaySource', 'ServerResponse', 'Socket', 'TsPacketizer', 'TCP', 'WriteWrap'];

/**
 * Counts heap-snapshot nodes of type "object" by name (the constructor), for the watched
 * classes. Format: V8's .heapsnapshot JSON (snapshot.meta.node_fields; nodes flattened).
 */
export function countObjects(file: string, names: readonly string[]): Record<string, number> {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  const fields = snap.snapshot.meta.node_fields;
  const width = fields.length;
  const typeAt = fields.indexOf('type');
  const nameAt = fields.indexOf('name');
  const objectType = snap.snapshot.meta.node_types[0].indexOf('object');
  const wanted = new Map(names.map((n) => [n, 0]));
  for (let i = 0; i < snap.nodes.length; i += width) {
    if (snap.nodes[i + typeAt] !== objectType) continue;
    const name = snap.strings[snap.nodes[i + nameAt]!]!;
    const n = wanted.get(name);
    if (n !== undefined) wanted.set(name, n + 1);
  }
  return Object.fromEntries(wanted);
}

/** Waits until a heap snapshot written by a worker (`--heapsnapshot-signal`) stops growing. */
async function waitForSnapshots(dir: string, count: number): Promise<string[]> {
  const until = Date.now() + 120_000;
  let last = '';
  while (Date.now() < until) {
    const files = readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot')).map((f) => path.join(dir, f));
    const sizes = files.map((f) => statSync(f).size).join(',');
    // A snapshot is complete once its JSON closes and it stopped growing.
    const closed = files.every((f) => { const b = readFileSync(f); return b.length > 0 && b[b.length - 1] === 0x7d; });
    if (files.length >= count && closed && sizes === last) return files;
    last = sizes;
    await sleep(1000);
  }
  throw new Error('heap snapshots not written in 120 s');
}

export interface MemoryOptions {
  root: string;
  tmp: string;
  origin: Origin;
  clientBin: string;
  viewers: number;
  cycles: number;
  workers: number;
  playMs: number;
  log: (msg: string) => void;
}

export async function runMemoryCycles(o: MemoryOptions, cleanup: Set<() => Promise<void>>): Promise<MemoryResult> {
  const snapDir = path.join(o.tmp, 'heap');
  rmSync(snapDir, { recursive: true, force: true });
  mkdirSync(snapDir, { recursive: true });
  const proxy = new ProxyProcess(`memory WORKERS=${o.workers}`, o.root, { WORKERS: String(o.workers), SHARED_STREAM_GRACE: '1' },
    ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${snapDir}`]);
  const stop = () => proxy.stop();
  cleanup.add(stop);
  const cycles: MemoryCycle[] = [];
  try {
    await proxy.start();
    for (let c = 1; c <= o.cycles; c++) {
      const originPath = `/live/memory-${c}.ts`;
      const { stream_id: id } = await proxy.api<{ stream_id: string }>('POST', '/streams', { url: o.origin.url(originPath) });
      const client = await LoadClient.start(o.clientBin);
      let connected = 0;
      let rssPlayingKiB = 0;
      try {
        connected = (await client.open('main', proxy.port, `/stream/${id}`, o.viewers, 100, 100, 20_000)).ok;
        await sleep(o.playMs);
        rssPlayingKiB = treeRssKiB(sampleTree(proxy.pid));
      } finally {
        await client.quit();
      }
      await proxy.api('DELETE', `/streams/${id}`);
      await sleep(3000); // grace, sockets closed, a GC or two
      const tree = sampleTree(proxy.pid);
      const rssAfterKiB = treeRssKiB(tree);
      await sleep(SETTLE_MS - 3000);
      const settled = sampleTree(proxy.pid);
      const rssSettledKiB = treeRssKiB(settled);
      cycles.push({ cycle: c, viewers: o.viewers, connected, rssPlayingKiB, rssAfterKiB, rssSettledKiB });
      // Per process (primary first): which one grows, if any.
      const each = (t: typeof tree): string => t.map((s) => `${s.pid === proxy.pid ? 'primary' : s.comm} ${fmt(s.rssKiB / 1024, 0)}`).join(', ');
      o.log(`  memory cycle ${c}: ${connected}/${o.viewers} viewers, RSS playing ${fmt(rssPlayingKiB / 1024, 1)} MiB, after ${fmt(rssAfterKiB / 1024, 1)} MiB (${each(tree)}), ` +
        `${SETTLE_MS / 1000} s after ${fmt(rssSettledKiB / 1024, 1)} MiB (${each(settled)})`);
    }
    // One snapshot per process: the workers, and the primary (viewers' connections pass
    // through it when they move to the worker that owns their stream).
    const workers = sampleTree(proxy.pid).filter((s) => s.comm !== 'ffmpeg');
    for (const w of workers) process.kill(w.pid, 'SIGUSR2');
    const files = await waitForSnapshots(snapDir, workers.length);
    const retained: Record<string, number> = Object.fromEntries(WATCHED.map((n) => [n, 0]));
    for (const f of files) {
      for (const [k, v] of Object.entries(countObjects(f, WATCHED))) retained[k] = (retained[k] ?? 0) + v;
    }
    const ratio = (k: 'rssAfterKiB' | 'rssSettledKiB'): number => (cycles[cycles.length - 1]?.[k] ?? Number.NaN) / (cycles[0]?.[k] ?? Number.NaN);
    const growth = ratio('rssAfterKiB');
    const growthSettled = ratio('rssSettledKiB');
    o.log(`  memory: RSS after cycle ${cycles.length} / after cycle 1 = ${fmt(growth, 3)} (${SETTLE_MS / 1000} s after each: ${fmt(growthSettled, 3)}); alive after the last: ${Object.entries(retained).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    return { workers: o.workers, cycles, growth, growthSettled, retained, heapSnapshots: files.length };
  } finally {
    await proxy.stop();
    cleanup.delete(stop);
    if (existsSync(snapDir)) rmSync(snapDir, { recursive: true, force: true });
  }
}
