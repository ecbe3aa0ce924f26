// A real, throw-away redis-server for tests: random free port on 127.0.0.1, nothing saved
// to disk, killed when the test process exits whatever happens.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';

export interface RedisServer {
  port: number;
  url: string;
  /** SIGTERM, resolved once it has exited. */
  stop(): Promise<void>;
  /** SIGKILL, at once (an outage). */
  kill(): void;
  /** Starts it again on the same port (after stop() or kill()). */
  restart(): Promise<void>;
  /** SIGSTOP: connections stay open, nothing is answered (a frozen coordinator). */
  pause(): void;
  /** SIGCONT after pause(). */
  resume(): void;
}

export interface StartRedisOptions {
  /** Extra redis-server arguments, e.g. `['--requirepass', 'secret']`. */
  args?: string[];
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export async function startRedis(opts: StartRedisOptions = {}): Promise<RedisServer> {
  const extra = opts.args ?? [];
  let child: ChildProcess | undefined;
  let port = 0;
  // A port found free can be taken before redis binds it: try another one.
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    try {
      child = await spawnRedis(port, extra);
      break;
    } catch (err) {
      if (attempt >= 4) throw err;
    }
  }

  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      if (child) await terminate(child, 'SIGTERM');
    },
    kill() {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
    pause() {
      child?.kill('SIGSTOP');
    },
    resume() {
      child?.kill('SIGCONT');
    },
    async restart() {
      if (child) await terminate(child, 'SIGKILL'); // kill() does not wait for the exit
      // The old socket may linger for a moment; redis binds with SO_REUSEADDR but retry anyway.
      for (let attempt = 0; ; attempt++) {
        try {
          child = await spawnRedis(port, extra);
          return;
        } catch (err) {
          if (attempt >= 9) throw err;
          await delay(100);
        }
      }
    },
  };
  return server;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Spawns redis-server and resolves once it answers PING; rejects when it exits first. */
async function spawnRedis(port: number, extra: string[]): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    [
      '--port', String(port),
      '--bind', '127.0.0.1',
      '--save', '',
      '--appendonly', 'no',
      '--protected-mode', 'no',
      '--dir', os.tmpdir(),
      ...extra,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  live.add(child);
  let output = '';
  const collect = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  void exited.then(() => live.delete(child));

  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) break;
    if (await answersPing(port)) return child;
    await Promise.race([delay(25), exited]);
  }
  child.kill('SIGKILL');
  await exited;
  throw new Error(`redis-server on port ${port} did not start:\n${output}`);
}

/** A raw PING: `+PONG` or `-NOAUTH` both mean the server is up. */
function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    let reply = '';
    const finish = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => finish(false));
    socket.once('error', () => finish(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => {
      reply += d.toString();
      if (reply.includes('\r\n')) finish(reply.startsWith('+PONG') || reply.startsWith('-NOAUTH'));
    });
  });
}

async function terminate(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  await exited;
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
