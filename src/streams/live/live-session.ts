// One live stream on one worker: its Channel and its viewers, fed either by the source (while
// this worker holds the stream's lease) or by one relay connection to the worker that does.
// The source starts with the first viewer and stops `grace` after the last one leaves.
import type { ServerResponse } from 'node:http';
import { CoordinatorUnavailableError, type Coordinator } from '../../coordination/coordinator.js';
import { LeaseKeeper, type LeaseEvent } from '../../coordination/lease-keeper.js';
import { SOURCE_EXIT_WAIT_MS } from '../../ffmpeg/ffmpeg-process.js';
import { AppError, upstreamUnavailable } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { Channel, type ChannelReader } from './channel.js';
import type { FailoverPlan, FailoverReason } from '../sources/failover-plan.js';
import { RelaySource, type RelayEnd } from '../sources/relay-source.js';
import type { StreamDefinition } from '../stream-definition.js';
import { Viewer, type ViewerEndReason } from './viewer.js';

export interface RelayTarget {
  workerId: string;
  address: string;
}

/** The coordinator key of the lease on source `key` (`{pool_key}:{slot}`). */
export const leaseKeyOf = (key: string): string => `lease:${key}`;

/**
 * The answer to a viewer still waiting for its first byte when this worker lost the race for
 * the source to `workerId`, a worker of this host with room: its connection should move there
 * (src/http/socket-handoff.ts) rather than be fed by a relay started for it alone.
 */
export class MoveToOwner extends Error {
  constructor(readonly workerId: string) {
    super(`The stream's source runs on worker ${workerId}`);
    this.name = 'MoveToOwner';
  }
}

/** What feeds the channel while this worker owns the session (upstream GET, FFmpeg). */
export interface OwnedSource {
  start(): void;
  /**
   * Stops the source. A source with a process (FFmpeg, a resolver) returns a promise that
   * settles once the process has exited (SIGKILL after its kill timeout at the latest): until
   * then it may still hold its upstream connection, so the session keeps the lease that long
   * and the next owner never runs beside it (DESIGN.md §5: one source per key).
   */
  stop(): void | Promise<void>;
  /**
   * Stops at once, with no graceful end (SIGKILL for a process): the lease is lost and a new
   * owner may be running its own source already. Unset: stop().
   */
  kill?(): void;
  /** The OS process of the source (FFmpeg), if it has one. */
  readonly pid: number | null;
  /** Failover state (current URL, index, attempts), for sources that fail over. */
  readonly plan?: FailoverPlan;
  /** Switches to the next source now; false when there is none. */
  switchNow?(reason: FailoverReason): Promise<boolean>;
  /** A re-POSTed definition reaches the running source. */
  updateDefinition?(def: StreamDefinition): void;
  /** Bytes the source delivered into the channel (metrics read it at scrape time). */
  readonly bytesIn?: number;
}

export interface LiveSessionOptions {
  def: StreamDefinition;
  /** `{pool_key}:{slot}`: one source per key in the deployment (lease `lease:{key}`). */
  key: string;
  createSource: (channel: Channel, session: LiveSession) => OwnedSource;
  coordinator: Coordinator;
  logger: Logger;
  workerId: string;
  leaseTtlMs: number;
  /** The lease key serves one viewer only (pooling off): no fencing counter is kept. */
  ephemeralLease?: boolean;
  graceMs: number;
  channelBufferBytes: number;
  channelBufferMs: number;
  channelCoalesceMs?: number;
  viewerMaxDrops: number;
  viewerStallTimeoutMs: number;
  connectTimeoutMs: number;
  /** Where the holder of a lease token serves relays; null when unknown. */
  resolveRelay: (holderToken: string) => Promise<RelayTarget | null>;
  relaySecret: () => Promise<string>;
  /** Reads the relay secret again (throttled): an owner refused ours. */
  rereadRelaySecret?: () => Promise<string>;
  /** The session is over (no viewers after grace, source failed, deleted). */
  onClosed: (session: LiveSession) => void;
  /** This worker started or stopped owning the source (heartbeats report it at once). */
  onOwnership?: () => void;
  /** A viewer left (for client records and events). */
  onViewerEnd: (clientId: string, viewer: Viewer, reason: ViewerEndReason) => void;
  /** Lease acquisitions, renewals and losses (metrics). */
  onLeaseEvent?: (event: LeaseEvent) => void;
  /** Whether viewers may move to `workerId` (a worker of this host with room); unset: never. */
  canMoveTo?: (workerId: string) => boolean;
}

const TICK_MS = 250;
/** Ticks in the input-rate window (5 s). */
const BITRATE_TICKS = 20;
const VIEWER_QUEUE_BUDGET = 256 * 1024;
// Null packets reach viewers within 1 s of the last data (players time out after a few).
const KEEPALIVE_AFTER_MS = 500;
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 1000;
/**
 * A relay silent this long is suspect: a live owner sends media or, while its source is
 * silent, keep-alive null packets every second. The relay is dropped once the lease holder
 * is not the worker it relays from (a frozen owner's lease expires; it cannot close sockets).
 */
export const RELAY_SILENCE_MS = 3000;
const TS_HEAD = { 'Content-Type': 'video/mp2t', 'Cache-Control': 'no-cache' };

export class LiveSession implements ChannelReader {
  readonly channel: Channel;
  readonly viewers = new Map<string, Viewer>();
  /** Relay connections this worker serves to other workers (as owner). */
  readonly relayViewers = new Set<Viewer>();
  readonly startedAt = new Date();
  private source: OwnedSource | null = null;
  /** A source told to stop whose process has not exited yet; the lease is held until it has. */
  private stopping: OwnedSource | null = null;
  /** Settles once the last stopped source has exited and the lease was given back. */
  private released: Promise<void> = Promise.resolve();
  private relay: RelaySource | null = null;
  /** The lease token of the owner the relay reads from. */
  private relayHolder: string | null = null;
  private checkingRelay = false;
  private readonly lease: LeaseKeeper;
  private pending = 0;
  private grace: NodeJS.Timeout | null = null;
  private retry: NodeJS.Timeout | null = null;
  private retryDelay = RETRY_MIN_MS;
  private readonly tick: NodeJS.Timeout;
  private closed = false;
  private deleted = false;
  /** Rolling restart, old side: this session only relays from now on. */
  private handingOver = false;
  private readyWaiters: Array<{ resolve: () => void; reject: (e: Error) => void; since: number; movable: boolean }> = [];
  private owning: Promise<void> = Promise.resolve();
  private acquiring = false;
  /** Bytes of viewers that already left. */
  private bytesOfLeft = 0;
  /** channel.bytesIn at each of the last ticks (the input-rate window). */
  private readonly inSamples: number[] = [];
  /** Bytes per second into the channel over the last BITRATE_TICKS ticks (metrics). */
  inRate = 0;
  lastAccess = new Date();

  constructor(private readonly opts: LiveSessionOptions) {
    this.channel = new Channel({
      maxBytes: opts.channelBufferBytes,
      maxAgeMs: opts.channelBufferMs,
      coalesceMs: opts.channelCoalesceMs,
    });
    this.channel.addReader(this);
    // The source's data path checks the lease deadline itself: after a freeze (SIGSTOP, a
    // stalled loop) I/O is served before the overdue deadline timer, and a resumed owner
    // would otherwise pass on upstream bytes beside the new owner's.
    this.channel.admit = () => this.source === null || this.lease.confirm();
    this.lease = new LeaseKeeper({
      coordinator: opts.coordinator,
      key: leaseKeyOf(opts.key),
      holder: opts.workerId,
      ttlMs: opts.leaseTtlMs,
      ephemeral: opts.ephemeralLease ?? false,
      onLost: () => this.onLeaseLost(),
      onEvent: opts.onLeaseEvent,
    });
    this.tick = setInterval(() => this.onTick(), TICK_MS);
    this.tick.unref();
    this.tryOwn();
  }

  get id(): string {
    return this.opts.def.id;
  }

  get definition(): StreamDefinition {
    return this.opts.def;
  }

  /**
   * Rolling restart, old side: the source stops and the lease is released for the replacement
   * (which adopted this key); viewers stay and are fed by a relay from the new owner. Never
   * takes the lease again.
   */
  handOver(): void {
    this.handingOver = true;
    if (this.closed || !this.source) return;
    this.opts.logger.info('handing the source over', { stream_id: this.id, source: this.key });
    this.stopSourceThenRelease();
    // Workers relaying from here look for the new owner.
    for (const v of [...this.relayViewers]) v.close('closed');
    this.retryDelay = RETRY_MIN_MS;
    this.retrySoon();
  }

  /** A session made without a viewer (adopted) idles after `ms` unless someone watches. */
  idleUnlessWatched(ms: number): void {
    const t = setTimeout(() => this.maybeIdle(), ms);
    t.unref();
  }

  /**
   * The coordinator lost this worker's state: an owner writes its lease (taken again if it
   * is gone) and its status at once; a session with neither source nor relay tries again now.
   */
  async reassert(): Promise<void> {
    if (this.closed) return;
    if (this.source) {
      await this.lease.renewNow();
      if (this.source) await this.writeStatus('running');
      return;
    }
    if (!this.relay) {
      this.retryDelay = RETRY_MIN_MS;
      this.tryOwn();
    }
  }

  get key(): string {
    return this.opts.key;
  }

  /** Settles once a stopped source has exited and the lease was given back (now when none). */
  get sourceReleased(): Promise<void> {
    return this.released;
  }

  get sourcePid(): number | null {
    return this.source?.pid ?? null;
  }

  get ownedSource(): OwnedSource | null {
    return this.source;
  }

  get isOwner(): boolean {
    return this.source !== null;
  }

  /** Owned or relayed, with nobody watching: waiting out its grace period. */
  get isIdle(): boolean {
    return !this.closed && this.grace !== null && this.interest === 0;
  }

  get isRelaying(): boolean {
    return this.relay !== null;
  }

  /** The failover state of the source this worker owns, if any. */
  get failoverPlan(): FailoverPlan | null {
    return this.source?.plan ?? null;
  }

  /** Viewers, relays or waiting requests: someone still wants the stream. */
  get hasInterest(): boolean {
    return this.interest > 0;
  }

  get bytesServed(): number {
    let sum = this.bytesOfLeft;
    for (const v of this.viewers.values()) sum += v.bytesSent;
    return sum;
  }

  /**
   * Attaches a viewer: waits for the first data (or the source's failure, as a 502), then
   * sends the head and starts at the newest join point.
   */
  async addViewer(clientId: string, res: ServerResponse, head: Record<string, string>, movable = false): Promise<Viewer | null> {
    const viewer = await this.attach(res, head, movable, (v, reason) => {
      if (this.viewers.get(clientId) === v) this.viewers.delete(clientId);
      this.bytesOfLeft += v.bytesSent;
      this.lastAccess = new Date();
      this.opts.onViewerEnd(clientId, v, reason);
    });
    if (viewer) {
      this.viewers.set(clientId, viewer);
      this.lastAccess = new Date();
    }
    return viewer;
  }

  /** Serves a relay connection to another worker; 'not_owner' when this worker is not the owner. */
  async addRelayViewer(res: ServerResponse): Promise<Viewer | null | 'not_owner'> {
    this.cancelGrace();
    await this.owning;
    if (!this.isOwner || !this.lease.confirm()) return 'not_owner';
    const viewer = await this.attach(res, TS_HEAD, false, (v) => this.relayViewers.delete(v));
    if (viewer) this.relayViewers.add(viewer);
    return viewer;
  }

  /**
   * Stops everything now: viewers disconnected, source stopped, the lease released once its
   * process has exited (`sourceReleased`). `deleted`: the stream is gone, so no status is
   * written (it would bring back a `stream:{id}` hash).
   */
  stop(deleted = false): void {
    if (this.closed) return;
    if (deleted) this.deleted = true;
    for (const v of [...this.viewers.values(), ...this.relayViewers]) v.close('closed');
    this.dispose(new AppError(404, 'STREAM_NOT_FOUND', `Stream ${this.id} was deleted`));
  }

  /** Manual failover (owner only): advances exactly once; false when nothing is left. */
  failover(): Promise<boolean> {
    return this.source?.switchNow?.('manual') ?? Promise.resolve(false);
  }

  updateDefinition(def: StreamDefinition): void {
    this.source?.updateDefinition?.(def);
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

  /**
   * `movable`: the viewer's connection may move to another worker of this host; it is then
   * rejected with MoveToOwner if this worker loses the race for the source.
   */
  private async attach(
    res: ServerResponse,
    head: Record<string, string>,
    movable: boolean,
    onEnd: (viewer: Viewer, reason: ViewerEndReason) => void,
  ): Promise<Viewer | null> {
    this.cancelGrace();
    // A viewer that waited for the first bytes gets all of them; a viewer joining a running
    // channel starts at its newest join point.
    const waited = !this.channel.hasData;
    this.pending++;
    // A session whose first viewers moved away has neither source nor relay: this one needs a feed.
    if (!this.retry) this.tryOwn();
    try {
      await this.ready(res, movable);
    } catch (err) {
      this.pending--;
      this.maybeIdle(); // a waiter that got an error is interest no more
      throw err;
    }
    this.pending--;
    if (res.destroyed || this.closed) {
      this.maybeIdle();
      return null;
    }
    try {
      // Raw (non-TS) sources reach players with their upstream's type, not video/mp2t.
      res.writeHead(200, { ...head, 'Content-Type': this.channel.contentType });
    } catch (err) {
      // No viewer came of this request: the session must still go idle, or its source runs
      // with nobody watching for as long as the process lives.
      this.maybeIdle();
      throw err;
    }
    const viewer: Viewer = new Viewer(this.channel, res, {
      maxDrops: this.opts.viewerMaxDrops,
      queueBudget: VIEWER_QUEUE_BUDGET,
      onEnd: (reason) => {
        onEnd(viewer, reason);
        this.maybeIdle();
      },
    });
    res.once('close', () => viewer.close('closed'));
    viewer.start(waited ? { seq: this.channel.firstSeq, offset: 0 } : undefined);
    return viewer;
  }

  private ready(res: ServerResponse, movable: boolean): Promise<void> {
    if (this.channel.hasData) return Promise.resolve();
    if (this.closed) return Promise.reject(upstreamUnavailable('The stream source is not available'));
    // The player hung up before it got here (during the client claim): its 'close' is past.
    if (res.destroyed || !res.socket || res.socket.destroyed) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const waiter = { resolve, reject, since: Date.now(), movable };
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

  private get interest(): number {
    return this.viewers.size + this.relayViewers.size + this.pending;
  }

  private maybeIdle(): void {
    if (this.closed || this.interest > 0 || this.grace) return;
    this.grace = setTimeout(() => {
      this.grace = null;
      if (this.interest === 0) this.dispose();
    }, this.opts.graceMs);
  }

  private cancelGrace(): void {
    if (this.grace) clearTimeout(this.grace);
    this.grace = null;
  }

  /** Takes the lease and starts the source, or relays from whoever holds it. */
  private tryOwn(): void {
    if (this.closed || this.source || this.relay || this.acquiring) return;
    this.acquiring = true;
    this.owning = this.own()
      .catch((err: unknown) => {
        this.opts.logger.warn('ownership attempt failed', { stream_id: this.id, error: String(err) });
        // Nobody can say who owns the stream: a viewer waiting for its first byte is answered
        // now (503 JSON) rather than kept waiting for the coordinator.
        if (err instanceof CoordinatorUnavailableError && !this.channel.hasData) {
          this.failWaiters(new AppError(503, 'COORDINATOR_UNAVAILABLE', 'The coordinator is unreachable: the owner of this stream cannot be found'));
        }
        this.retrySoon();
      })
      .finally(() => {
        this.acquiring = false;
        // A viewer that came while the last waiters were moved away found `acquiring` set.
        if (!this.source && !this.relay && this.readyWaiters.length > 0) this.retrySoon();
      });
  }

  private async own(): Promise<void> {
    const { def, logger, coordinator } = this.opts;
    if (!this.handingOver && (await this.lease.acquire())) {
      if (this.closed) return void (await this.lease.release());
      this.retryDelay = RETRY_MIN_MS;
      this.source = this.opts.createSource(this.channel, this);
      logger.info('source started', { stream_id: def.id, source: this.key });
      this.source.start();
      this.opts.onOwnership?.();
      await this.writeStatus('running');
      return;
    }
    const holder = await coordinator.leaseHolder(this.lease.key);
    const target = holder ? await this.opts.resolveRelay(holder) : null;
    if (this.closed) return;
    if (!target || target.workerId === this.opts.workerId) return this.retrySoon();
    if (this.movedAway(target.workerId)) return;
    const secret = await this.opts.relaySecret();
    // Stopped while the secret was fetched: no relay for a session nobody watches.
    if (this.closed) return;
    this.relayHolder = holder;
    this.relay = new RelaySource({
      key: this.key,
      address: target.address,
      secret,
      from: this.opts.workerId,
      channel: this.channel,
      connectTimeoutMs: this.opts.connectTimeoutMs,
      onEnd: (how, detail) => this.onRelayEnd(how, detail),
    });
    logger.info('relaying from the owner', { stream_id: def.id, source: this.key, owner: target.workerId });
    this.relay.start();
  }

  /**
   * Lost the race for the source (players often open two connections at once): when every
   * viewer of this session is still waiting for its first byte and may move, and the owner
   * has room, they move there instead of this worker relaying for them alone. True when they
   * were sent away (no relay starts; the session idles out unless someone else joins).
   */
  private movedAway(owner: string): boolean {
    const waiting = this.readyWaiters;
    // Handing over (rolling restart): this worker's server no longer takes connections to move.
    if (this.handingOver || this.viewers.size + this.relayViewers.size > 0 || waiting.length === 0 || waiting.some((w) => !w.movable)) return false;
    if (!this.opts.canMoveTo?.(owner)) return false;
    this.readyWaiters = [];
    for (const w of waiting) w.reject(new MoveToOwner(owner));
    return true;
  }

  private onRelayEnd(how: RelayEnd, detail: string): void {
    this.relay = null;
    if (this.closed) return;
    this.opts.logger.info('relay ended', { stream_id: this.id, how, detail });
    if (how === 'ended') return this.dispose();
    if (how === 'failed') return this.dispose(new Error(detail));
    if (how === 'forbidden') {
      // One of us holds a stale secret (the coordinator lost it): read it again, back off.
      void this.opts.rereadRelaySecret?.().catch(() => undefined);
      return this.retrySoon();
    }
    this.retryDelay = RETRY_MIN_MS;
    this.retrySoon();
  }

  private retrySoon(): void {
    if (this.closed || this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      this.tryOwn();
    }, this.retryDelay);
    this.retryDelay = Math.min(this.retryDelay * 2, RETRY_MAX_MS);
  }

  /** Owner-side status write, fenced by the lease epoch. */
  private async writeStatus(status: 'running' | 'stopped'): Promise<void> {
    const lease = this.lease.lease;
    if (!lease || this.deleted) return;
    await this.opts.coordinator
      .setStreamStatus(this.id, {
        status, owner: this.opts.workerId, pid: process.pid, epoch: lease.epoch, updatedAt: new Date().toISOString(),
      })
      .catch((err: unknown) => this.opts.logger.warn('status write failed', { stream_id: this.id, error: String(err) }));
  }

  /**
   * Stops the owned source (if any) and releases the lease once it has stopped: the replacement
   * (rolling restart) or a worker waiting for the key starts its FFmpeg only after this one
   * has exited, never beside it.
   */
  private stopSourceThenRelease(): void {
    const source = this.source;
    this.source = null;
    let stopped: Promise<unknown> | undefined;
    if (source) {
      this.opts.onOwnership?.();
      this.stopping = source;
      stopped = Promise.resolve().then(() => source.stop());
    }
    // After a hand-over the source is already exiting: this release waits behind that one.
    this.released = this.released
      .then(() => this.lease.releaseAfter(stopped, SOURCE_EXIT_WAIT_MS))
      .finally(() => {
        if (source && this.stopping === source) this.stopping = null;
      });
  }

  private onLeaseLost(): void {
    // Lost while a stopped source was still exiting: it goes now (a new owner may run).
    const stopping = this.stopping;
    this.stopping = null;
    if (stopping?.kill) stopping.kill();
    if (this.closed) return;
    // Bytes held for coalescing came from the source we no longer own: never passed on.
    this.channel.dropPending();
    if (this.source?.kill) this.source.kill();
    else void this.source?.stop();
    this.opts.logger.warn('lease lost, source stopped', { stream_id: this.id });
    this.source = null;
    this.opts.onOwnership?.();
    // Workers relaying from here must find the new owner.
    for (const v of [...this.relayViewers]) v.close('closed');
    this.retrySoon();
  }

  /** A silent relay whose owner no longer holds the lease is dropped; ownership is resolved again. */
  private async checkRelay(relay: RelaySource): Promise<void> {
    this.checkingRelay = true;
    try {
      const holder = await this.opts.coordinator.leaseHolder(this.lease.key);
      if (this.relay !== relay || holder === this.relayHolder) return;
      this.opts.logger.warn('relay silent and its owner lost the lease: resolving the owner again', {
        stream_id: this.id, silent_ms: Date.now() - relay.lastActivityAt,
      });
      relay.stop();
      this.relay = null;
      this.retryDelay = RETRY_MIN_MS;
      this.retrySoon();
    } catch {
      // The coordinator cannot tell: keep the relay, ask again at the next tick.
    } finally {
      this.checkingRelay = false;
    }
  }

  private failWaiters(err: Error, olderThan = 0): void {
    const now = Date.now();
    const failed = this.readyWaiters.filter((w) => now - w.since >= olderThan);
    if (failed.length === 0) return;
    this.readyWaiters = this.readyWaiters.filter((w) => !failed.includes(w));
    for (const w of failed) w.reject(err);
  }

  private onTick(): void {
    const now = Date.now();
    // A first byte that no source and no relay is on its way to: the wait has a deadline.
    if (this.readyWaiters.length > 0 && !this.source && !this.relay && !this.channel.hasData) {
      this.failWaiters(new AppError(503, 'COORDINATOR_UNAVAILABLE', 'No owner of this stream could be reached in time'),
        this.opts.connectTimeoutMs + this.opts.leaseTtlMs);
    }
    const samples = this.inSamples;
    samples.push(this.channel.bytesIn);
    if (samples.length > BITRATE_TICKS + 1) samples.shift();
    if (samples.length > 1) this.inRate = ((samples[samples.length - 1]! - samples[0]!) * 1000) / ((samples.length - 1) * TICK_MS);
    const relay = this.relay;
    if (relay && !this.checkingRelay && now - relay.lastActivityAt >= RELAY_SILENCE_MS) void this.checkRelay(relay);
    if (this.channel.hasData && now - this.channel.lastDataAt >= KEEPALIVE_AFTER_MS) this.channel.keepAlive();
    for (const v of [...this.viewers.values(), ...this.relayViewers]) {
      if (v.waitingSince > 0 && now - v.waitingSince >= this.opts.viewerStallTimeoutMs) v.close('stalled');
    }
  }

  private dispose(error?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.cancelGrace();
    if (this.retry) clearTimeout(this.retry);
    clearInterval(this.tick);
    if (this.source) void this.writeStatus('stopped');
    this.relay?.stop();
    this.relay = null;
    this.stopSourceThenRelease();
    const failure =
      error instanceof AppError ? error : upstreamUnavailable(error ? `Upstream unavailable: ${error.message}` : 'The stream ended');
    for (const w of this.readyWaiters) w.reject(failure);
    this.readyWaiters = [];
    this.channel.end(error);
    this.opts.logger.info('live session closed', { stream_id: this.id });
    this.opts.onClosed(this);
  }
}
