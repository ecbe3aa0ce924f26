// Summarises a V8 .cpuprofile (written by `node --cpu-prof`) as its top self-time functions,
// so BENCHMARKS.md can say where a loaded worker spends its CPU.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

interface CpuProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
}

interface CpuProfile {
  nodes: CpuProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface HotFunction {
  name: string;
  where: string;
  selfMs: number;
  /** Share of the profile's busy (non-idle) time. */
  share: number;
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  busyMs: number;
  top: HotFunction[];
}

/** Where a frame lives, short: `src/streams/viewer.js:87`, `node:net`, or '(native)'. */
function shortUrl(url: string, line: number): string {
  if (!url) return '(native)';
  const m = /\/(dist\/)?((src|bench)\/.*)$/.exec(url);
  if (m) return `${m[2]}:${line + 1}`;
  if (url.startsWith('node:')) return url;
  const nm = /node_modules\/(.*)$/.exec(url);
  if (nm) return `${nm[1]}:${line + 1}`;
  return `${path.basename(url)}:${line + 1}`;
}

export function summarizeProfile(file: string, topN = 15): ProfileSummary {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map<string, { name: string; where: string; us: number }>();
  let total = 0;
  let idle = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    const node = byId.get(prof.samples[i]!);
    const dt = prof.timeDeltas[i] ?? 0;
    if (!node || dt < 0) continue;
    total += dt;
    const f = node.callFrame;
    if (f.functionName === '(idle)') {
      idle += dt;
      continue;
    }
    const name = f.functionName || '(anonymous)';
    const where = shortUrl(f.url, f.lineNumber);
    const key = `${name}@${where}`;
    const e = self.get(key) ?? { name, where, us: 0 };
    e.us += dt;
    self.set(key, e);
  }
  const busy = total - idle;
  const top = [...self.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, topN)
    .map((e) => ({ name: e.name, where: e.where, selfMs: e.us / 1000, share: busy > 0 ? e.us / busy : 0 }));
  return { file: path.basename(file), totalMs: total / 1000, busyMs: busy / 1000, top };
}

/** The profile of the busiest process in `dir` (the loaded worker, not the primary). */
export function busiestProfile(dir: string): ProfileSummary | null {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).map((f) => path.join(dir, f));
  if (files.length === 0) return null;
  // The biggest file is the one with the most distinct stacks: cheap first guess, then check.
  files.sort((a, b) => statSync(b).size - statSync(a).size);
  let best: ProfileSummary | null = null;
  for (const f of files.slice(0, 3)) {
    const s = summarizeProfile(f);
    if (!best || s.busyMs > best.busyMs) best = s;
  }
  return best;
}
