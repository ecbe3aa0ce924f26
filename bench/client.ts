// Builds the C load client (bench/client.c) with gcc at bench time and drives it over its
// stdin/stdout line protocol. A C epoll client is used because a Node client holding 1,000+
// viewers at 8 Mbit/s would itself need about a core and become the bottleneck.
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** bench/client.c, found from dist/bench/client.js or from bench/client.ts. */
function sourcePath(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const p of [path.join(here, 'client.c'), path.join(here, '..', '..', 'bench', 'client.c')]) {
    if (existsSync(p)) return p;
  }
  throw new Error('bench/client.c not found');
}

/** Compiles the client into `dir`; returns the binary's path. */
export async function buildClient(dir: string): Promise<string> {
  const out = path.join(dir, 'bench-client');
  try {
    await execFileAsync('gcc', ['-O2', '-Wall', '-o', out, sourcePath()], { timeout: 60_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`gcc failed (the bench needs gcc): ${e.stderr ?? e.message}`);
  }
  return out;
}

export interface GroupReport {
  n: number;
  ok: number;
  ended: number;
  first_0x47: number;
  first_pat: number;
  failed: { connect: number; status: number; closed: number; timeout: number };
  ttfb_ms: number[];
  statuses: number[];
  /** Body bytes per connection between the last two marks; -1: not open for the whole window. */
  window_bytes: number[];
  raw_bytes: number;
  body_bytes: number;
}

export interface ClientReport {
  window_s: number;
  /** The client's own CPU seconds (user + sys) between the last two marks. */
  client_cpu_s: number;
  groups: Record<string, GroupReport>;
}

interface Event {
  ev: string;
  [k: string]: unknown;
}

/** One running client process. */
export class LoadClient {
  private readonly waiters: Array<{ match: (e: Event) => boolean; resolve: (e: Event) => void; reject: (e: Error) => void }> = [];
  private exited = false;

  private constructor(private readonly proc: ChildProcessWithoutNullStreams) {
    createInterface({ input: proc.stdout }).on('line', (line) => {
      let e: Event;
      try {
        e = JSON.parse(line) as Event;
      } catch {
        return;
      }
      const i = this.waiters.findIndex((w) => w.match(e));
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(e);
    });
    proc.stderr.on('data', (d: Buffer) => process.stderr.write(`[client] ${d.toString()}`));
    proc.once('exit', () => {
      this.exited = true;
      for (const w of this.waiters.splice(0)) w.reject(new Error('load client exited'));
    });
  }

  /** Starts the client with a raised fd limit (bash's ulimit, then exec). */
  static async start(binary: string): Promise<LoadClient> {
    const proc = spawn('bash', ['-c', 'ulimit -n 65536 2>/dev/null || ulimit -n 20000; exec "$0"', binary], { stdio: ['pipe', 'pipe', 'pipe'] });
    const c = new LoadClient(proc);
    await c.expect((e) => e.ev === 'ready', 10_000);
    return c;
  }

  get pid(): number {
    return this.proc.pid ?? -1;
  }

  private expect(match: (e: Event) => boolean, timeoutMs: number): Promise<Event> {
    return new Promise((resolve, reject) => {
      if (this.exited) return reject(new Error('load client exited'));
      const w = {
        match,
        resolve: (e: Event) => {
          clearTimeout(t);
          resolve(e);
        },
        reject: (err: Error) => {
          clearTimeout(t);
          reject(err);
        },
      };
      const t = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`load client: no answer in ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  private send(line: string): void {
    this.proc.stdin.write(`${line}\n`);
  }

  /**
   * Opens `n` viewers of 127.0.0.1:port+path, `batch` connects every `intervalMs`; resolves
   * when each has its first body byte, failed, or waited `timeoutMs`.
   */
  async open(group: string, port: number, urlPath: string, n: number, batch: number, intervalMs: number, timeoutMs = 10_000): Promise<{ ok: number; failed: number }> {
    const answer = this.expect((e) => e.ev === 'opened' && e.group === group, Math.ceil(n / batch) * intervalMs + timeoutMs + 10_000);
    this.send(`open ${group} ${port} ${urlPath} ${n} ${batch} ${intervalMs} ${timeoutMs}`);
    const e = await answer;
    return { ok: Number(e.ok), failed: Number(e.failed) };
  }

  /** Snapshots every viewer's byte counter (two marks make a window). */
  async mark(): Promise<void> {
    const answer = this.expect((e) => e.ev === 'mark', 10_000);
    this.send('mark');
    await answer;
  }

  async report(): Promise<ClientReport> {
    const answer = this.expect((e) => e.ev === 'report', 30_000);
    this.send('report');
    return (await answer) as unknown as ClientReport;
  }

  async close(group: string): Promise<void> {
    const answer = this.expect((e) => e.ev === 'closed' && e.group === group, 10_000);
    this.send(`close ${group}`);
    await answer;
  }

  /** Ends the client (every socket closed with a RST); kills it if it lingers. */
  async quit(): Promise<void> {
    if (this.exited) return;
    const gone = new Promise<void>((resolve) => this.proc.once('exit', () => resolve()));
    this.send('quit');
    const t = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(t);
  }
}
