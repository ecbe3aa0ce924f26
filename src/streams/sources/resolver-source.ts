// The owner side of a direct stream with a resolver: streamlink or yt-dlp writes the media to
// its stdout (`-O` / `-o -`) and that feeds the shared Channel, like an upstream body. One
// resolver process per stream in the deployment (the session's lease), whatever the viewers.
import type { ChildProcess } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { upstreamUnavailable } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { Channel } from '../live/channel.js';
import type { OwnedSource } from '../live/live-session.js';
import { prepareResolver, resolverLabel, resolverMissing, resolverReason, spawnResolver, type ResolverEnv } from '../resolvers/resolver-run.js';
import type { StreamDefinition } from '../stream-definition.js';

export interface ResolverSourceOptions {
  def: StreamDefinition;
  channel: Channel;
  logger: Logger;
  env: ResolverEnv;
  killAfterMs: number;
  /** The resolver's pid started (true) or ended (false): the primary kills it if the worker dies. */
  onPid: (pid: number | null, running: boolean) => void;
}

const STDERR_KEEP = 8192;

export class ResolverSource implements OwnedSource {
  private child: ChildProcess | null = null;
  private stopped = false;
  private bytes = 0;
  private stderr = '';
  private killTimer: NodeJS.Timeout | null = null;

  constructor(private readonly opts: ResolverSourceOptions) {}

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  /** Bytes the resolver delivered (metrics). */
  get bytesIn(): number {
    return this.bytes;
  }

  start(): void {
    void this.run();
  }

  /** Settles when the resolver process has exited (SIGKILL after killAfterMs at the latest). */
  stop(): Promise<void> | undefined {
    this.stopped = true;
    const child = this.child;
    // A failed spawn (no pid) emits 'error', never 'exit'.
    if (!child || child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return undefined;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    if (!this.killTimer) {
      this.killTimer = setTimeout(() => child.kill('SIGKILL'), this.opts.killAfterMs);
      this.killTimer.unref();
    }
    return exited;
  }

  /** Stops now (SIGKILL): the lease is lost and a new owner may already be running. */
  kill(): void {
    void this.stop();
    this.child?.kill('SIGKILL');
  }

  private async run(): Promise<void> {
    const { def, channel, logger } = this.opts;
    const spec = def.resolver!;
    let cmd;
    try {
      cmd = await prepareResolver(def, this.opts.env, 'pipe');
    } catch (err) {
      if (!this.stopped) channel.end(err as Error);
      return;
    }
    if (this.stopped) {
      await rm(cmd.workDir, { recursive: true, force: true });
      return;
    }
    const child = spawnResolver(cmd);
    this.child = child;
    const pid = child.pid ?? null;
    this.opts.onPid(pid, true);
    child.stdout!.on('data', (chunk: Buffer) => {
      if (this.stopped) return; // a new owner may run: a stopped resolver passes nothing on
      this.bytes += chunk.length;
      channel.write(chunk);
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString('utf8')).slice(-STDERR_KEEP);
    });
    let spawnError: NodeJS.ErrnoException | null = null;
    child.on('error', (err: NodeJS.ErrnoException) => {
      spawnError = err;
    });
    child.once('close', (code, signal) => {
      if (this.killTimer) clearTimeout(this.killTimer);
      this.opts.onPid(pid, false);
      void rm(cmd.workDir, { recursive: true, force: true });
      if (this.stopped) return;
      const err = spawnError as NodeJS.ErrnoException | null;
      if (err?.code === 'ENOENT') return channel.end(resolverMissing(spec));
      const reason = resolverReason(this.stderr || (err?.message ?? `exited with ${code ?? signal}`));
      logger.warn('resolver ended', { stream_id: def.id, resolver: resolverLabel(spec), code, signal, bytes: this.bytes, detail: reason });
      channel.end(this.bytes === 0
        ? upstreamUnavailable(`${resolverLabel(spec)} failed: ${reason}`)
        : new Error(`${resolverLabel(spec)} ended: ${reason}`));
    });
  }
}
