// Podman for the container test, with the settings that work on a plain Debian VM or CI box
// (scripts/container/containers.conf: runc, cgroupfs, no default ulimits) and host networking,
// so the container reaches the test origin on 127.0.0.1 and the test reaches the proxy.
import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (dist/test/support → ../../..). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

const env = { ...process.env, CONTAINERS_CONF: path.join(REPO_ROOT, 'scripts', 'container', 'containers.conf') };

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end (never rejects); `timeoutMs` kills it with SIGKILL. */
export function runCommand(cmd: string, args: string[], timeoutMs: number): Promise<CommandResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env, cwd: REPO_ROOT, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** `podman <args>`; rejects with podman's stderr when it fails. */
export async function podman(args: string[], timeoutMs = 60_000): Promise<string> {
  const r = await runCommand('podman', args, timeoutMs);
  if (r.code !== 0) throw new Error(`podman ${args.join(' ')} failed (${r.code}): ${r.stderr.trim().slice(-2000)}`);
  return r.stdout;
}

/**
 * A long command with its output streamed to a log (for builds): resolves with the exit code
 * and the last 4 KiB of output, so a failed build says why.
 */
export function runStreaming(cmd: string, args: string[], timeoutMs: number): Promise<{ code: number; tail: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env, cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let tail = '';
    const keep = (b: Buffer): void => {
      tail = (tail + b.toString()).slice(-4096);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, tail });
    });
  });
}

/** The runtime and network flags every `podman run`/`build` of the test uses. */
export const RUN_FLAGS = ['--runtime', 'runc', '--network', 'host'];
