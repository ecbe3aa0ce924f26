// CPU and memory of a process tree, and of the whole machine, read from /proc. The proxy is a
// cluster (primary + workers, + FFmpeg children for transcodes), so every figure is summed
// over the tree rooted at the process the bench spawned.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** USER_HZ: /proc/<pid>/stat counts CPU time in these ticks (100 on every Linux we run on). */
const CLK_TCK = 100;

export interface ProcSample {
  pid: number;
  ppid: number;
  comm: string;
  /** utime + stime, in seconds. */
  cpuS: number;
  /** Resident set size, in KiB. */
  rssKiB: number;
}

function readStat(pid: number): ProcSample | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm is in parentheses and may contain spaces: split after the last ')'.
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const f = stat.slice(close + 2).split(' ');
    // Fields after comm: state(0) ppid(1) ... utime(11) stime(12).
    const ppid = Number(f[1]);
    const cpuS = (Number(f[11]) + Number(f[12])) / CLK_TCK;
    let rssKiB = 0;
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    if (m) rssKiB = Number(m[1]);
    return { pid, ppid, comm, cpuS, rssKiB };
  } catch {
    return null; // gone meanwhile
  }
}

/** Every process of the tree rooted at `root` (root included), one sample each. */
export function sampleTree(root: number): ProcSample[] {
  const all: ProcSample[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(Number(name));
    if (s) all.push(s);
  }
  const byParent = new Map<number, ProcSample[]>();
  for (const s of all) {
    const list = byParent.get(s.ppid) ?? [];
    list.push(s);
    byParent.set(s.ppid, list);
  }
  const out: ProcSample[] = [];
  const rootSample = all.find((s) => s.pid === root);
  if (!rootSample) return out;
  const queue = [rootSample];
  while (queue.length > 0) {
    const s = queue.shift()!;
    out.push(s);
    queue.push(...(byParent.get(s.pid) ?? []));
  }
  return out;
}

export interface TreeDelta {
  /** CPU seconds of the tree over the interval (processes present at both ends, plus new ones). */
  cpuS: number;
  /** CPU seconds per process (by pid) over the interval. */
  perPid: Map<number, { comm: string; cpuS: number }>;
  /** Sum of RSS at the end, KiB. */
  rssKiB: number;
}

export function treeDelta(before: ProcSample[], after: ProcSample[]): TreeDelta {
  const prev = new Map(before.map((s) => [s.pid, s.cpuS]));
  const perPid = new Map<number, { comm: string; cpuS: number }>();
  let cpuS = 0;
  let rssKiB = 0;
  for (const s of after) {
    const d = s.cpuS - (prev.get(s.pid) ?? 0);
    perPid.set(s.pid, { comm: s.comm, cpuS: d });
    cpuS += d;
    rssKiB += s.rssKiB;
  }
  return { cpuS, perPid, rssKiB };
}

export const treeRssKiB = (tree: ProcSample[]): number => tree.reduce((n, s) => n + s.rssKiB, 0);

export interface MachineSample {
  busy: number;
  total: number;
}

/** The machine-wide `cpu` line of /proc/stat: busy and total ticks over all cores. */
export function sampleMachine(): MachineSample {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user).
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = v;
  const idleAll = idle + iowait;
  const total = user + nice + system + idleAll + irq + softirq + steal;
  return { busy: total - idleAll, total };
}

/** Cores busy on average between two samples (0 … nproc). */
export function machineCores(a: MachineSample, b: MachineSample, nproc: number): number {
  const total = b.total - a.total;
  return total > 0 ? ((b.busy - a.busy) / total) * nproc : 0;
}

/** Bytes a process read and wrote through syscalls (/proc/<pid>/io rchar + wchar). */
export function ioBytes(pid: number): number {
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    const get = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(io)?.[1] ?? 0);
    return get('rchar') + get('wchar');
  } catch {
    return 0;
  }
}

interface TcpEntry {
  localPort: number;
  remotePort: number;
  inode: string;
}

/** Established TCP connections of this network namespace (IPv4), from /proc/net/tcp. */
function establishedTcp(): TcpEntry[] {
  const out: TcpEntry[] = [];
  const lines = readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1);
  for (const line of lines) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[3] !== '01') continue; // 01 = ESTABLISHED
    out.push({ localPort: parseInt(f[1]!.split(':')[1]!, 16), remotePort: parseInt(f[2]!.split(':')[1]!, 16), inode: f[9]! });
  }
  return out;
}

/** Socket inodes a process holds open (from its fd links `socket:[inode]`). */
function socketInodes(pid: number): Set<string> {
  const out = new Set<string>();
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m) out.add(m[1]!);
      } catch {
        // closed meanwhile
      }
    }
  } catch {
    // process gone
  }
  return out;
}

/**
 * Per process: established connections accepted on `localPort` (its viewers) and opened to
 * `remotePort` (its upstream GETs). The workers' own heartbeat records lag by up to
 * HEARTBEAT_INTERVAL, so the bench counts sockets instead.
 */
export function connectionsByPid(pids: number[], localPort: number, remotePort: number): Map<number, { viewers: number; upstreams: number }> {
  const tcp = establishedTcp();
  const out = new Map<number, { viewers: number; upstreams: number }>();
  for (const pid of pids) {
    const inodes = socketInodes(pid);
    let viewers = 0;
    let upstreams = 0;
    for (const e of tcp) {
      if (!inodes.has(e.inode)) continue;
      if (e.localPort === localPort) viewers++;
      if (e.remotePort === remotePort) upstreams++;
    }
    out.set(pid, { viewers, upstreams });
  }
  return out;
}
