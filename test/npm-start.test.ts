// `npm start` under a supervisor (issue 18): systemd and container runtimes send SIGTERM to
// the process they started, which is npm. The start script must hand that signal to the
// primary (the script ends in `exec node …`), so the cluster drains and no process is left.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { childPids, isAlive } from './support/cluster.js';
import { waitFor } from './support/ts-viewer.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

describe('npm start under a supervisor', function () {
  this.timeout(120_000);

  it('SIGTERM to the npm start process reaches the primary: it drains and every process exits', async () => {
    const logs: Array<{ message?: string; pid?: number }> = [];
    const npm = spawn('npm', ['start', '--silent'], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp',
        HOST: '127.0.0.1', PORT: '0', WORKERS: '1', WORKER_ID: `npm${process.pid}`, ENV_FILE: '/dev/null',
        DRAIN_TIMEOUT: '2',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let buf = '';
    const onData = (d: Buffer): void => {
      buf += d.toString();
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          logs.push(JSON.parse(line) as { message?: string; pid?: number });
        } catch {
          // npm's own lines
        }
      }
    };
    npm.stdout!.on('data', onData);
    npm.stderr!.on('data', onData);
    const npmExit = new Promise<void>((resolve) => npm.once('exit', () => resolve()));
    let primary = 0;
    let workers: number[] = [];
    try {
      await waitFor(() => logs.some((l) => l.message === 'primary ready'), 90_000, 'npm start to be ready');
      primary = Number(logs.find((l) => l.message === 'primary ready')!.pid);
      workers = childPids(primary);
      expect(workers).to.have.length(1);
      npm.kill('SIGTERM');
      await waitFor(() => logs.some((l) => l.message === 'primary stopped'), 15_000, 'the primary to drain and stop');
      await npmExit;
      await waitFor(() => !isAlive(primary) && workers.every((p) => !isAlive(p)), 5000, 'no process left');
    } finally {
      for (const pid of [primary, ...workers]) if (pid && isAlive(pid)) process.kill(pid, 'SIGKILL');
      if (npm.exitCode === null) npm.kill('SIGKILL');
    }
  });
});
