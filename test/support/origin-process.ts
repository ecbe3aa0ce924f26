// The test origin (origin.ts) in a process of its own: it keeps writing while the test
// process is stalled on purpose (an event loop blocked past a lease deadline), as a real
// provider does while its client is frozen.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startOrigin } from './origin.js';

export interface OriginProcess {
  pid: number;
  url(path: string): string;
  close(): Promise<void>;
}

const SELF = fileURLToPath(import.meta.url);

export async function startOriginProcess(): Promise<OriginProcess> {
  const child: ChildProcess = spawn(process.execPath, [SELF, '--serve'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString('utf8');
      const m = /^port (\d+)\n/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once('exit', (code) => reject(new Error(`origin process exited with ${code}`)));
  });
  return {
    pid: child.pid!,
    url: (path) => `http://127.0.0.1:${port}${path}`,
    close: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.stdin!.end(); // the child exits when its stdin closes (also when this process dies)
    }),
  };
}

if (process.argv[1] === SELF && process.argv[2] === '--serve') {
  const origin = await startOrigin();
  process.stdout.write(`port ${origin.port}\n`);
  process.stdin.resume();
  process.stdin.once('end', () => void origin.close().then(() => process.exit(0)));
}
