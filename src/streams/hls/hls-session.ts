// One HLS stream (or HLS transcode slot) on one worker: who owns it (the lease holder is the
// only worker that talks to the origin or runs the FFmpeg), which viewers poll it here, and the
// last-viewer lifecycle. HLS viewers are not sockets: a viewer counts while it sends requests
// and leaves after CLIENT_TIMEOUT without one (API.md §4.2); requests other workers forward to
// the owner count as interest the same way, so the owner keeps its part while anyone watches.
import type { Coordinator } from '../../coordination/coordinator.js';
import { SOURCE_EXIT_WAIT_MS } from '../../ffmpeg/ffmpeg-process.js';
import { LeaseKeeper } from '../../coordination/lease-keeper.js';
import { AppError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import type { RelayTarget } from '../live/live-session.js';

/** What the owner runs for the session (the shared fetcher, or FFmpeg + its directory). */
export interface HlsOwnedPart {
  readonly pid: number | null;
  stop(): Promise<void>;
}

export type HlsRoute<P extends HlsOwnedPart> = { owned: P; relay?: undefined } | { owned?: undefined; relay: RelayTarget };

export interface HlsSessionOptions<P extends HlsOwnedPart> {
  id: string;
  /** `{pool_key}:{slot}`: lease `lease:{key}`. */
  key: string;
  coordinator: Coordinator;
  logger: Logger;
  workerId: string;
  leaseTtlMs: number;
  graceMs: number;
  clientTimeoutMs: number;
  /** Starts the owner's part once this worker holds the lease; `fail` ends the session. */
  startOwned: (fail: (err: Error) => void) => Promise<P>;
  resolveRelay: (holderToken: string) => Promise<RelayTarget | null>;
  onViewerEnd: (clientId: string) => void;
  onClosed: (session: HlsSession<P>) => void;
  onOwnership?: () => void;
}

const TICK_MS = 1000;
const ROUTE_TRIES = 20;
const ROUTE_RETRY_MS = 100;

export class HlsSession<P extends HlsOwnedPart = HlsOwnedPart> {
  /** client id → last request (ms). */
  readonly viewers = new Map<string, number>();
  /** Other workers forwarding to this owner: worker id → last request (ms). */
  private readonly remote = new Map<string, number>();
  readonly startedAt = new Date();
  lastAccess = new Date();
  private owned: P | null = null;
  private target: RelayTarget | null = null;
  private routing: Promise<HlsRoute<P>> | null = null;
  private readonly lease: LeaseKeeper;
  /** Settles once the stopped owner part has exited and the lease was given back. */
  private released: Promise<void> = Promise.resolve();
  private readonly tick: NodeJS.Timeout;
  private grace: NodeJS.Timeout | null = null;
  private inFlight = 0;
  private closed = false;

  constructor(private readonly opts: HlsSessionOptions<P>) {
    this.lease = new LeaseKeeper({
      coordinator: opts.coordinator,
      key: `lease:${opts.key}`,
      holder: opts.workerId,
      ttlMs: opts.leaseTtlMs,
      onLost: () => this.onLeaseLost(),
    });
    this.tick = setInterval(() => this.onTick(), TICK_MS);
    this.tick.unref();
  }

  get id(): string {
    return this.opts.id;
  }

  get key(): string {
    return this.opts.key;
  }

  get isOwner(): boolean {
    return this.owned !== null;
  }

  get ownedPart(): P | null {
    return this.owned;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** A local viewer's request; true when it is new here. */
  touch(clientId: string): boolean {
    const isNew = !this.viewers.has(clientId);
    this.viewers.set(clientId, Date.now());
    this.lastAccess = new Date();
    this.cancelGrace();
    return isNew;
  }

  /** Forgets a viewer (DELETE /hls/{id}/clients/{client_id}); true when it polled here. */
  forget(clientId: string): boolean {
    const had = this.viewers.delete(clientId);
    if (had) this.maybeIdle();
    return had;
  }

  /** A request another worker forwarded to this owner. */
  touchRemote(workerId: string): void {
    this.remote.set(workerId, Date.now());
    this.cancelGrace();
  }

  /** Runs `fn` with the session held open (a request waiting for the owner or a first playlist). */
  async hold<T>(fn: () => Promise<T>): Promise<T> {
    this.inFlight++;
    this.cancelGrace();
    try {
      return await fn();
    } finally {
      this.inFlight--;
      this.maybeIdle();
    }
  }

  /** Where requests go: this worker's own part (taking the lease if it is free), or the owner. */
  route(): Promise<HlsRoute<P>> {
    if (this.closed) return Promise.reject(new AppError(502, 'UPSTREAM_UNAVAILABLE', 'The HLS stream has stopped'));
    if (this.owned) return Promise.resolve({ owned: this.owned });
    if (this.target) return Promise.resolve({ relay: this.target });
    this.routing ??= this.resolve().finally(() => {
      this.routing = null;
    });
    return this.routing;
  }

  /** The owner this worker relayed to answered "not the owner" or was unreachable. */
  ownerGone(): void {
    this.target = null;
  }

  /**
   * Ends the session now (deleted stream, failed part). Settles once the owner part's FFmpeg
   * has exited and the lease is given back (the next owner never runs beside it).
   */
  stop(error?: Error): Promise<void> {
    if (this.closed) return this.released;
    this.closed = true;
    this.cancelGrace();
    clearInterval(this.tick);
    const owned = this.owned;
    this.owned = null;
    if (owned) {
      this.opts.onOwnership?.();
      if (error) this.opts.logger.warn('HLS owner part failed', { stream_id: this.id, error: error.message });
    }
    this.released = this.lease.releaseAfter(owned?.stop(), SOURCE_EXIT_WAIT_MS);
    for (const clientId of [...this.viewers.keys()]) this.opts.onViewerEnd(clientId);
    this.viewers.clear();
    this.opts.onClosed(this);
    return this.released;
  }

  private async resolve(): Promise<HlsRoute<P>> {
    for (let i = 0; i < ROUTE_TRIES && !this.closed; i++) {
      if (await this.lease.acquire()) {
        if (this.closed) {
          await this.lease.release();
          break;
        }
        try {
          this.owned = await this.opts.startOwned((err) => this.stop(err));
        } catch (err) {
          await this.lease.release();
          throw err;
        }
        if (this.closed) {
          // stop() ran while the part started: the lease goes back once this one has exited.
          const late = this.owned;
          this.owned = null;
          await this.lease.releaseAfter(late.stop(), SOURCE_EXIT_WAIT_MS);
          break;
        }
        this.opts.logger.info('HLS owner part started', { stream_id: this.id, source: this.key });
        this.opts.onOwnership?.();
        return { owned: this.owned };
      }
      const holder = await this.opts.coordinator.leaseHolder(this.lease.key);
      const target = holder ? await this.opts.resolveRelay(holder) : null;
      if (target && target.workerId !== this.opts.workerId) {
        this.target = target;
        return { relay: target };
      }
      await new Promise((r) => setTimeout(r, ROUTE_RETRY_MS));
    }
    throw new AppError(503, 'UPSTREAM_UNAVAILABLE', 'The owner of this HLS stream could not be found');
  }

  private onLeaseLost(): void {
    const owned = this.owned;
    this.owned = null;
    if (owned) {
      this.opts.logger.warn('HLS lease lost, stopping the owner part', { stream_id: this.id });
      void owned.stop();
      this.opts.onOwnership?.();
    }
  }

  private get interest(): number {
    return this.viewers.size + this.remote.size + this.inFlight;
  }

  private onTick(): void {
    const cutoff = Date.now() - this.opts.clientTimeoutMs;
    for (const [clientId, seen] of [...this.viewers]) {
      if (seen >= cutoff) continue;
      this.viewers.delete(clientId);
      this.opts.onViewerEnd(clientId);
    }
    for (const [w, seen] of [...this.remote]) if (seen < cutoff) this.remote.delete(w);
    this.maybeIdle();
  }

  private maybeIdle(): void {
    if (this.closed || this.interest > 0 || this.grace) return;
    this.grace = setTimeout(() => {
      this.grace = null;
      if (this.interest === 0) void this.stop();
    }, this.opts.graceMs);
  }

  private cancelGrace(): void {
    if (this.grace) clearTimeout(this.grace);
    this.grace = null;
  }
}
