// Reads the Prometheus text exposition format (what /metrics answers) into samples, and runs
// promtool on it, for tests that check names, labels and values of a live scrape.
import { spawn } from 'node:child_process';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Every sample line of a scrape (comments and blank lines skipped). */
export function parseSamples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_s, c: string) => (c === 'n' ? '\n' : c));
    }
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The metric family names of a scrape (`# TYPE` lines). */
export function familyNames(text: string): string[] {
  return [...text.matchAll(/^# TYPE (\S+) \S+$/gm)].map((m) => m[1]!);
}

/** Sum of the samples named `name` whose labels include `match`. */
export function sumOf(samples: Sample[], name: string, match: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v))
    .reduce((n, s) => n + s.value, 0);
}

/** Runs a promtool subcommand, `stdin` piped in; resolves with its exit code and output. */
export function promtool(args: string[], stdin?: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('promtool', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (output += c.toString('utf8')));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
    child.stdin.end(stdin ?? '');
  });
}

/**
 * Label values that must never appear in metrics: URLs, IPv4/IPv6 addresses, and any of
 * `secrets` (tokens, passwords, user agents) inside a value. Returns the offending samples.
 */
export function leakyLabels(samples: Sample[], secrets: string[]): string[] {
  const bad: string[] = [];
  for (const s of samples) {
    for (const [k, v] of Object.entries(s.labels)) {
      const leak = /^[a-z][a-z0-9+.-]*:\/\//i.test(v) || /\b\d{1,3}(\.\d{1,3}){3}\b/.test(v) ||
        /^[0-9a-f]*:[0-9a-f]*:[0-9a-f:]*$/i.test(v) || secrets.some((x) => x !== '' && v.includes(x));
      if (leak) bad.push(`${s.name}{${k}="${v}"}`);
    }
  }
  return bad;
}
