// Holds one lease: renews it every TTL/3 and reports its loss at once, so the owner can stop
// its source before anyone else could take over.
//
// A holder that cannot reach the store cannot know whether its lease still exists, and the
// store lets it expire TTL after the last renewal the store applied. So the holder counts
// the lease as valid only until `sent + TTL - margin`, where `sent` is when the last
// successful renewal (or the acquisition) was *sent* (the store applied it later, so this
// errs on the safe side), and the margin covers timer lateness and clock-rate differences.
// Past that instant it reports the lease lost even though nobody said so: a partitioned owner
// stops its source before another host can take the expired lease.
import { performance } from 'node:perf_hooks';
import type { Coordinator, Lease } from './coordinator.js';

export interface LeaseKeeperOptions {
  coordinator: Coordinator;
  key: string;
  holder: string;
  ttlMs: number;
  /** A key used once (one viewer's own source): no fencing counter is left behind. */
  ephemeral?: boolean;
  onLost: () => void;
  /** Counted by metrics: each acquisition attempt, renewal and loss. */
  onEvent?: (event: LeaseEvent) => void;
}

export type LeaseEvent = 'acquired' | 'busy' | 'renewed' | 'lost';

/** The part of the TTL a holder gives up to timer lateness and clock drift: 20 %, ≥ 50 ms. */
export function leaseMarginMs(ttlMs: number): number {
  return Math.max(50, Math.floor(ttlMs / 5));
}

export class LeaseKeeper {
  private timer: NodeJS.Timeout | null = null;
  private deadline: NodeJS.Timeout | null = null;
  private current: Lease | null = null;
  /** performance.now() until which the current lease is certainly ours. */
  private validUntil = 0;

  constructor(private readonly opts: LeaseKeeperOptions) {}

  get key(): string {
    return this.opts.key;
  }

  get lease(): Lease | null {
    return this.current;
  }

  /** Whether the lease is held and certainly not expired in the store yet. */
  get valid(): boolean {
    return this.current !== null && performance.now() < this.validUntil;
  }

  /**
   * Whether the lease is still certainly ours, judged now (performance.now() against the
   * deadline) rather than when the deadline timer gets to run. A process that wakes up late
   * (SIGSTOP then SIGCONT, an event loop stalled past the deadline) serves the I/O that
   * waited before its overdue timers, so the source's data path asks this before it passes a
   * byte on. Past the deadline the lease is lost here and now: onLost has run when this
   * returns false.
   */
  confirm(): boolean {
    if (this.current === null) return false;
    if (performance.now() < this.validUntil) return true;
    this.lose();
    return false;
  }

  /** Tries once; true when this keeper now holds the lease. */
  async acquire(): Promise<boolean> {
    const { coordinator, key, holder, ttlMs } = this.opts;
    const sent = performance.now();
    const lease = await coordinator.acquireLease(key, holder, ttlMs, this.opts.ephemeral);
    this.opts.onEvent?.(lease ? 'acquired' : 'busy');
    if (!lease) return false;
    this.current = lease;
    this.extend(sent);
    this.timer = setInterval(() => void this.renew(), Math.max(50, Math.floor(ttlMs / 3)));
    this.timer.unref();
    return true;
  }

  /**
   * Gives the lease back once `stopped` (a stopped source's process exiting) has settled, or
   * after `maxWaitMs` at the latest; until then it stays held and renewed, so the next holder
   * never runs its source beside one still exiting (one source per key, DESIGN.md §5).
   */
  async releaseAfter(stopped: Promise<unknown> | void | undefined, maxWaitMs: number): Promise<void> {
    if (stopped) {
      let timer: NodeJS.Timeout | undefined;
      const bound = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, maxWaitMs);
        timer.unref();
      });
      await Promise.race([stopped.catch(() => undefined), bound]);
      clearTimeout(timer);
    }
    await this.release();
  }

  async release(): Promise<void> {
    const lease = this.current;
    this.stopTimer();
    if (lease) await this.opts.coordinator.releaseLease(lease).catch(() => false);
  }

  /** Renews now (after the store came back empty: the lease is written again at once). */
  async renewNow(): Promise<void> {
    await this.renew();
  }

  private async renew(): Promise<void> {
    const lease = this.current;
    if (!lease) return;
    const { coordinator, key, holder, ttlMs } = this.opts;
    const sent = performance.now();
    try {
      if (await coordinator.renewLease(lease, ttlMs)) {
        if (this.current === lease) this.extend(sent);
        this.opts.onEvent?.('renewed');
        return;
      }
      // Gone (expired, or the store restarted): take it again if nobody else has.
      const again = await coordinator.acquireLease(key, holder, ttlMs, this.opts.ephemeral);
      if (again && this.current === lease) {
        this.current = again;
        this.extend(sent);
        return;
      }
      if (again) await coordinator.releaseLease(again);
    } catch {
      // The store is unreachable: the lease stays ours until the deadline armed by the last
      // renewal that went through; the next renewal may still make it.
      return;
    }
    if (this.current === lease) this.lose();
  }

  private extend(sent: number): void {
    const { ttlMs } = this.opts;
    this.validUntil = sent + ttlMs - leaseMarginMs(ttlMs);
    this.armDeadline(this.current);
  }

  /**
   * Loses the lease at `validUntil` unless a renewal moved it. Timers run on libuv's
   * whole-millisecond clock and may fire a fraction of a millisecond before `validUntil` as
   * performance.now() sees it: such an early wake-up arms again instead of doing nothing.
   */
  private armDeadline(lease: Lease | null): void {
    if (this.deadline) clearTimeout(this.deadline);
    this.deadline = setTimeout(() => {
      if (this.current !== lease) return;
      if (performance.now() >= this.validUntil) this.lose();
      else this.armDeadline(lease);
    }, Math.max(1, Math.ceil(this.validUntil - performance.now())));
    this.deadline.unref();
  }

  private lose(): void {
    const lease = this.current;
    this.stopTimer();
    // The source stops first: nothing else may run while it still holds its upstream.
    this.opts.onLost();
    // A renewal still in flight may have kept it alive in the store: give it back, so the
    // next holder does not wait for the TTL (fails harmlessly while the store is unreachable).
    if (lease) void this.opts.coordinator.releaseLease(lease).catch(() => false);
    this.opts.onEvent?.('lost');
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.deadline) clearTimeout(this.deadline);
    this.timer = this.deadline = null;
    this.current = null;
    this.validUntil = 0;
  }
}
