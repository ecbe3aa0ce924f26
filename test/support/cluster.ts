// Runs the real product (`node dist/src/index.js`: primary + cluster workers) as a child
// process on 127.0.0.1 and a random port, and reads its JSON logs.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitFor } from './ts-viewer.js';

const ENTRIES = {
  cluster: fileURLToPath(new URL('../../src/index.js', import.meta.url)),
  single: fileURLToPath(new URL('../../src/single.js', import.meta.url)),
};

export interface LogLine {
  message: string;
  [k: string]: unknown;
}

export interface TestCluster {
  port: number;
  pid: number;
  child: ChildProcess;
  logs: LogLine[];
  url(path: string): string;
  /** Pids of the primary's child processes (workers), read from the OS. */
  workerPids(): number[];
  api<T = unknown>(path: string, init?: RequestInit): Promise<{ status: number; body: T }>;
  /** SIGTERM and wait for the exit code. */
  stop(timeoutMs?: number): Promise<number | null>;
}

/** Child processes of `pid` whose command is `comm` (e.g. node: cluster workers, not tool probes). */
export function childPidsNamed(pid: number, comm: string): number[] {
  try {
    return execFileSync('ps', ['-o', 'pid=,comm=', '--ppid', String(pid)], { encoding: 'utf8' })
      .split('\n').map((l) => l.trim().split(/\s+/)).filter(([p, c]) => Number(p) > 0 && c === comm).map(([p]) => Number(p));
  } catch {
    return [];
  }
}

export function childPids(pid: number): number[] {
  try {
    return execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
      .split('\n').map((s) => Number(s.trim())).filter((n) => n > 0);
  } catch {
    return []; // ps exits 1 when there are none
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

/** `mode: 'single'` runs `npm run start:single`'s entry (one process, no cluster). */
export async function startCluster(
  env: Record<string, string> = {},
  timeoutMs = 60_000,
  mode: keyof typeof ENTRIES = 'cluster',
): Promise<TestCluster> {
  const logs: LogLine[] = [];
  const child = spawn(process.execPath, [ENTRIES[mode]], {
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/tmp',
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'info',
      WORKER_ID: `t${process.pid}`,
      HEARTBEAT_INTERVAL: '0.5',
      CLEANUP_INTERVAL: '1',
      ENV_FILE: '/dev/null',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let exited: number | null | undefined;
  child.once('exit', (code) => {
    exited = code;
    running.delete(child);
  });
  let buf = '';
  const onData = (chunk: Buffer): void => {
    buf += chunk.toString('utf8');
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        logs.push(JSON.parse(line) as LogLine);
      } catch {
        logs.push({ message: line });
      }
      if (process.env.TEST_LOGS) process.stderr.write(`[cluster] ${line}\n`);
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);

  await waitFor(() => exited !== undefined || logs.some((l) => l.message === 'primary ready'), timeoutMs, 'the cluster to be ready');
  if (exited !== undefined) throw new Error(`cluster exited with ${exited}: ${logs.map((l) => JSON.stringify(l)).join('\n')}`);
  const port = Number(logs.find((l) => l.message === 'primary ready')!.port);
  const base = `http://127.0.0.1:${port}`;

  return {
    port, child, logs, pid: child.pid!,
    url: (path) => `${base}${path}`,
    workerPids: () => childPidsNamed(child.pid!, 'node'),
    async api<T>(path: string, init?: RequestInit) {
      const res = await fetch(`${base}${path}`, {
        ...init,
        headers: { ...(init?.body ? { 'Content-Type': 'application/json' } : {}), ...(init?.headers as Record<string, string>) },
      });
      return { status: res.status, body: (await res.json()) as T };
    },
    async stop(stopTimeoutMs = 15_000) {
      if (exited !== undefined) return exited;
      const done = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), stopTimeoutMs);
      const code = await done;
      clearTimeout(t);
      return code;
    },
  };
}

/** POST /streams on a cluster; the stream id. */
export async function createOn(cluster: TestCluster, url: string): Promise<string> {
  const res = await cluster.api<{ stream_id: string }>('/streams', { method: 'POST', body: JSON.stringify({ url }) });
  if (res.status !== 200) throw new Error(`POST /streams answered ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body.stream_id;
}
