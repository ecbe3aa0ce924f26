// The servers under test, started as child processes exactly as a user would start them:
// the proxy as `npm start` runs it (node dist/src/index.js, a cluster primary + workers) and
// the floor (node dist/bench/floor.js). Each is stopped by the bench, never left behind.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { sampleTree } from './proc.js';

const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 15_000;

/** Waits for the first stdout JSON line that `match` accepts; later lines go to `after`. */
function waitForLine(
  proc: ChildProcess, what: string, match: (o: Record<string, unknown>) => boolean, stderrTail: () => string,
  after: (line: string) => void = () => undefined,
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout! });
    const done = (err: Error | null, o?: Record<string, unknown>): void => {
      clearTimeout(t);
      proc.off('exit', onExit);
      rl.removeAllListeners('line');
      // Keep draining stdout so the child never blocks on a full pipe.
      rl.on('line', after);
      if (err) reject(err);
      else resolve(o!);
    };
    const onExit = (code: number | null): void => done(new Error(`${what} exited (code ${code}) before it was ready:\n${stderrTail()}`));
    const t = setTimeout(() => done(new Error(`${what}: not ready in ${READY_TIMEOUT_MS} ms:\n${stderrTail()}`)), READY_TIMEOUT_MS);
    proc.once('exit', onExit);
    rl.on('line', (line) => {
      try {
        const o = JSON.parse(line) as Record<string, unknown>;
        if (match(o)) done(null, o);
      } catch {
        // not JSON: ignore
      }
    });
  });
}

/** Keeps the last few KB of a child's stderr, for error messages. */
function tailOf(proc: ChildProcess): () => string {
  let tail = '';
  proc.stderr?.on('data', (d: Buffer) => {
    tail = (tail + d.toString()).slice(-4000);
  });
  return () => tail;
}

/** SIGTERM, then SIGKILL to every process of the tree if it has not exited in time. */
async function stopTree(proc: ChildProcess, pid: number): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const tree = sampleTree(pid).map((s) => s.pid);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.kill('SIGTERM');
  const timedOut = await Promise.race([exited.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), STOP_TIMEOUT_MS))]);
  // Children (workers, FFmpeg) that outlived their parent are killed by pid, one by one.
  for (const p of tree) {
    try {
      process.kill(p, 0);
      if (timedOut || p !== pid) process.kill(p, 'SIGKILL');
    } catch {
      // gone
    }
  }
  if (timedOut) await exited;
}

export class ProxyProcess {
  port = 0;
  pid = 0;
  private proc: ChildProcess | null = null;
  private readonly headers: Record<string, string>;
  /** The proxy's log lines after "primary ready" (JSON, LOG_LEVEL as set in `env`); none kept unless set. */
  onLog: ((line: string) => void) | undefined;

  constructor(
    readonly name: string,
    private readonly root: string,
    private readonly env: Record<string, string>,
    /** Node flags for the primary; cluster workers inherit them (--cpu-prof is refused in NODE_OPTIONS). */
    private readonly execArgv: string[] = [],
    /**
     * CPUs to start it on (`taskset -c`): its defaults (WORKERS = the CPUs it may use) see
     * these, as `npm start` on a host with that many CPUs would; none = wherever it runs.
     */
    private readonly cpus: number[] = [],
  ) {
    this.headers = { 'Content-Type': 'application/json' };
    if (process.env.API_TOKEN) this.headers['X-API-Token'] = process.env.API_TOKEN;
  }

  /** Spawns `node dist/src/index.js`; resolves once the primary logs "primary ready". */
  async start(): Promise<void> {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      HOST: '127.0.0.1',
      PORT: '0',
      // "primary ready" is an info line; nothing is logged per viewer at info.
      LOG_LEVEL: 'info',
      LOG_FORMAT: 'json',
      // A stopped bench must not wait 30 s for viewers that are already gone.
      DRAIN_TIMEOUT: '5',
      ...this.env,
    };
    delete env.NODE_OPTIONS;
    const argv = [process.execPath, ...this.execArgv, 'dist/src/index.js'];
    // taskset execs node: the pid stays the proxy's.
    if (this.cpus.length > 0) argv.unshift('taskset', '-c', this.cpus.join(','));
    const proc = spawn(argv[0]!, argv.slice(1), { cwd: this.root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    this.pid = proc.pid ?? 0;
    const ready = await waitForLine(proc, `proxy ${this.name}`, (o) => o.message === 'primary ready' && typeof o.port === 'number', tailOf(proc), (line) => this.onLog?.(line));
    this.port = ready.port as number;
  }

  get base(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async api<T = Record<string, unknown>>(method: string, p: string, body?: unknown): Promise<T> {
    const res = await fetch(`${this.base}${p}`, {
      method,
      headers: this.headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(20_000),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${p} → ${res.status}: ${text.slice(0, 500)}`);
    return JSON.parse(text) as T;
  }

  async stop(): Promise<void> {
    if (this.proc) await stopTree(this.proc, this.pid);
    this.proc = null;
  }
}

export class FloorProcess {
  port = 0;
  pid = 0;
  private proc: ChildProcess | null = null;

  constructor(private readonly root: string) {}

  async start(upstreamUrl: string): Promise<void> {
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    // stdin is a pipe: the floor exits when it closes, so it never outlives the bench.
    const proc = spawn(process.execPath, ['dist/bench/floor.js', upstreamUrl], { cwd: this.root, env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc = proc;
    this.pid = proc.pid ?? 0;
    const ready = await waitForLine(proc, 'floor', (o) => typeof o.port === 'number', tailOf(proc));
    this.port = ready.port as number;
  }

  async stop(): Promise<void> {
    if (this.proc) await stopTree(this.proc, this.pid);
    this.proc = null;
  }
}
