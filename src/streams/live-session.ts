// One live stream on one worker: its Channel, its viewers, and — while this worker holds the
// stream's lease — the source that feeds the Channel. The source starts with the first viewer
// and stops `grace` after the last one leaves.
import type { ServerResponse } from 'node:http';
import type { Coordinator } from '../coordination/coordinator.js';
import { LeaseKeeper } from '../coordination/lease-keeper.js';
import { AppError, upstreamUnavailable } from '../errors.js';
import type { Logger } from '../logger.js';
import { Channel, type ChannelReader } from './channel.js';
import { HttpSource, type FailoverInfo, type HttpSourceOptions } from './http-source.js';
import type { StreamDefinition } from './stream-definition.js';
import { Viewer, type ViewerEndReason } from './viewer.js';

export interface LiveSessionOptions {
  def: StreamDefinition;
  coordinator: Coordinator;
  logger: Logger;
  workerId: string;
  leaseTtlMs: number;
  graceMs: number;
  channelBufferBytes: number;
  channelBufferMs: number;
  viewerMaxDrops: number;
  viewerStallTimeoutMs: number;
  source: Omit<HttpSourceOptions, 'def' | 'channel' | 'logger' | 'onFailover' | 'onFailed'>;
  onFailover?: (info: FailoverInfo) => void;
  /** The session is over (no viewers after grace, source failed, deleted). */
  onClosed: (session: LiveSession) => void;
  /** A viewer left (for client records and events). */
  onViewerEnd: (clientId: string, viewer: Viewer, reason: ViewerEndReason) => void;
}

const TICK_MS = 1000;
const KEEPALIVE_AFTER_MS = 1000;

export class LiveSession implements ChannelReader {
  readonly channel: Channel;
  readonly viewers = new Map<string, Viewer>();
  readonly startedAt = new Date();
  private source: HttpSource | null = null;
  private readonly lease: LeaseKeeper;
  private pending = 0;
  private grace: NodeJS.Timeout | null = null;
  private readonly tick: NodeJS.Timeout;
  private closed = false;
  private readyWaiters: Array<{ resolve: () => void; reject: (e: AppError) => void }> = [];
  private acquiring = false;
  /** Bytes of viewers that already left. */
  private bytesOfLeft = 0;
  lastAccess = new Date();

  constructor(private readonly opts: LiveSessionOptions) {
    this.channel = new Channel({ maxBytes: opts.channelBufferBytes, maxAgeMs: opts.channelBufferMs });
    this.channel.addReader(this);
    this.lease = new LeaseKeeper({
      coordinator: opts.coordinator,
      key: `lease:${opts.def.id}:1`,
      holder: opts.workerId,
      ttlMs: opts.leaseTtlMs,
      onLost: () => this.onLeaseLost(),
    });
    this.tick = setInterval(() => this.onTick(), TICK_MS);
    this.tick.unref();
    void this.tryOwn();
  }

  get id(): string {
    return this.opts.def.id;
  }

  get isOwner(): boolean {
    return this.source !== null;
  }

  get httpSource(): HttpSource | null {
    return this.source;
  }

  get viewerCount(): number {
    return this.viewers.size;
  }

  get bytesServed(): number {
    let sum = this.bytesOfLeft;
    for (const v of this.viewers.values()) sum += v.bytesSent;
    return sum;
  }

  /**
   * Attaches a viewer: waits for the source's first data (or its failure, as a 502), then
   * sends the head and starts at the newest join point.
   */
  async addViewer(clientId: string, res: ServerResponse, head: Record<string, string>): Promise<Viewer | null> {
    this.cancelGrace();
    // A viewer that waited for the source's first bytes gets all of them; a viewer joining a
    // running channel starts at its newest join point.
    const waited = !this.channel.hasData;
    this.pending++;
    try {
      await this.ready(res);
    } finally {
      this.pending--;
    }
    if (res.destroyed || this.closed) {
      this.maybeIdle();
      return null;
    }
    res.writeHead(200, head);
    const viewer = new Viewer(this.channel, res, {
      maxDrops: this.opts.viewerMaxDrops,
      onEnd: (reason) => this.removeViewer(clientId, viewer, reason),
    });
    this.viewers.set(clientId, viewer);
    this.lastAccess = new Date();
    res.once('close', () => viewer.close('closed'));
    viewer.start(waited ? this.channel.firstSeq : undefined);
    return viewer;
  }

  /** Stops everything now: viewers disconnected, source stopped, lease released. */
  stop(): void {
    if (this.closed) return;
    for (const v of [...this.viewers.values()]) v.close('closed');
    this.dispose(new AppError(404, 'STREAM_NOT_FOUND', `Stream ${this.id} was deleted`));
  }

  failover(): boolean {
    return this.source?.manualFailover() ?? false;
  }

  // ChannelReader: the session watches its own channel for the first data and the end.
  wake(): void {
    if (this.readyWaiters.length > 0 && this.channel.hasData) {
      const waiters = this.readyWaiters;
      this.readyWaiters = [];
      for (const w of waiters) w.resolve();
    }
  }

  end(error?: Error): void {
    this.dispose(error);
  }

  private ready(res: ServerResponse): Promise<void> {
    if (this.channel.hasData) return Promise.resolve();
    if (this.closed) return Promise.reject(upstreamUnavailable('The stream source is not available'));
    return new Promise<void>((resolve, reject) => {
      const waiter = { resolve, reject };
      this.readyWaiters.push(waiter);
      // A player that hangs up while waiting stops counting as interest.
      res.once('close', () => {
        const i = this.readyWaiters.indexOf(waiter);
        if (i >= 0) {
          this.readyWaiters.splice(i, 1);
          resolve();
        }
      });
    });
  }

  private removeViewer(clientId: string, viewer: Viewer, reason: ViewerEndReason): void {
    if (this.viewers.get(clientId) === viewer) this.viewers.delete(clientId);
    this.bytesOfLeft += viewer.bytesSent;
    this.lastAccess = new Date();
    this.opts.onViewerEnd(clientId, viewer, reason);
    this.maybeIdle();
  }

  private maybeIdle(): void {
    if (this.closed || this.viewers.size > 0 || this.pending > 0 || this.grace) return;
    this.grace = setTimeout(() => {
      this.grace = null;
      if (this.viewers.size === 0 && this.pending === 0) this.dispose();
    }, this.opts.graceMs);
  }

  private cancelGrace(): void {
    if (this.grace) clearTimeout(this.grace);
    this.grace = null;
  }

  private async tryOwn(): Promise<void> {
    if (this.closed || this.source || this.acquiring) return;
    this.acquiring = true;
    try {
      if (!(await this.lease.acquire())) return; // another holder: retried on the next tick
      if (this.closed) return void (await this.lease.release());
      const { def, logger } = this.opts;
      this.source = new HttpSource({
        ...this.opts.source,
        def,
        channel: this.channel,
        logger,
        onFailover: this.opts.onFailover,
      });
      logger.info('live source started', { stream_id: def.id });
      this.source.start();
      await this.writeStatus('running');
    } catch (err) {
      this.opts.logger.warn('lease acquisition failed', { stream_id: this.id, error: String(err) });
    } finally {
      this.acquiring = false;
    }
  }

  /** Owner-side status write, fenced by the lease epoch. */
  private async writeStatus(status: 'running' | 'stopped'): Promise<void> {
    const lease = this.lease.lease;
    if (!lease) return;
    await this.opts.coordinator
      .setStreamStatus(this.id, {
        status, owner: this.opts.workerId, pid: process.pid, epoch: lease.epoch, updatedAt: new Date().toISOString(),
      })
      .catch((err: unknown) => this.opts.logger.warn('status write failed', { stream_id: this.id, error: String(err) }));
  }

  private onLeaseLost(): void {
    this.opts.logger.warn('lease lost, stopping the source', { stream_id: this.id });
    this.source?.stop();
    this.source = null;
  }

  private onTick(): void {
    if (!this.source) void this.tryOwn();
    const now = Date.now();
    if (this.channel.hasData && now - this.channel.lastDataAt >= KEEPALIVE_AFTER_MS) this.channel.keepAlive();
    for (const v of this.viewers.values()) {
      if (v.waitingSince > 0 && now - v.waitingSince >= this.opts.viewerStallTimeoutMs) v.close('stalled');
    }
  }

  private dispose(error?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.cancelGrace();
    clearInterval(this.tick);
    if (this.source) void this.writeStatus('stopped');
    this.source?.stop();
    this.source = null;
    void this.lease.release();
    const failure =
      error instanceof AppError ? error : upstreamUnavailable(error ? `Upstream unavailable: ${error.message}` : 'The stream ended');
    for (const w of this.readyWaiters) w.reject(failure);
    this.readyWaiters = [];
    this.channel.end(error);
    this.opts.logger.info('live session closed', { stream_id: this.id });
    this.opts.onClosed(this);
  }
}
