// Holds one lease: renews it every TTL/3 and reports its loss at once, so the owner can stop
// its source before anyone else could take over.
import { CoordinatorUnavailableError, type Coordinator, type Lease } from './coordinator.js';

export interface LeaseKeeperOptions {
  coordinator: Coordinator;
  key: string;
  holder: string;
  ttlMs: number;
  onLost: () => void;
  /** Counted by metrics: each acquisition attempt, renewal and loss. */
  onEvent?: (event: LeaseEvent) => void;
}

export type LeaseEvent = 'acquired' | 'busy' | 'renewed' | 'lost';

export class LeaseKeeper {
  private timer: NodeJS.Timeout | null = null;
  private current: Lease | null = null;

  constructor(private readonly opts: LeaseKeeperOptions) {}

  get key(): string {
    return this.opts.key;
  }

  get lease(): Lease | null {
    return this.current;
  }

  /** Tries once; true when this keeper now holds the lease. */
  async acquire(): Promise<boolean> {
    const { coordinator, key, holder, ttlMs } = this.opts;
    const lease = await coordinator.acquireLease(key, holder, ttlMs);
    this.opts.onEvent?.(lease ? 'acquired' : 'busy');
    if (!lease) return false;
    this.current = lease;
    this.timer = setInterval(() => void this.renew(), Math.max(50, Math.floor(ttlMs / 3)));
    this.timer.unref();
    return true;
  }

  async release(): Promise<void> {
    const lease = this.current;
    this.stopTimer();
    if (lease) await this.opts.coordinator.releaseLease(lease).catch(() => false);
  }

  private async renew(): Promise<void> {
    const lease = this.current;
    if (!lease) return;
    const { coordinator, key, holder, ttlMs } = this.opts;
    try {
      if (await coordinator.renewLease(lease, ttlMs)) return void this.opts.onEvent?.('renewed');
      // Gone (expired, or the store restarted): take it again if nobody else has.
      const again = await coordinator.acquireLease(key, holder, ttlMs);
      if (again && this.current === lease) {
        this.current = again;
        return;
      }
      if (again) await coordinator.releaseLease(again);
    } catch (err) {
      // The store is unreachable: nobody can take the lease meanwhile, so the source keeps
      // playing; the next renewal tells whether it is still ours.
      if (err instanceof CoordinatorUnavailableError) return;
    }
    if (this.current === lease) {
      this.stopTimer();
      this.opts.onEvent?.('lost');
      this.opts.onLost();
    }
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.current = null;
  }
}
