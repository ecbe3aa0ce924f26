// One full garbage collection once a process is quiet after a burst of short-lived work.
//
// Why: what lives through two scavenges (a connection waiting for its hand-off ack, a viewer's
// client record) is promoted to V8's old space, and old space is collected only when it
// reaches its allocation limit, which on a box with gigabytes of memory is far above what
// these processes keep alive. Measured in the benchmark's memory cycles (bench/memory.ts,
// `--trace-gc`): after four cycles of 1,000 viewers the primary's old space held 19 → 34 MiB
// with no mark-compact at all, while a heap snapshot (a full GC) found 16 MiB alive; RSS
// followed the garbage, cycle after cycle. V8's memory reducer did not step in (the primary
// still allocates a little every second for load reports and metrics).
//
// So a process counts the events that end such work (viewers leaving, connections passed on)
// and, once `minEvents` of them came and then none for `quietMs`, collects once. A burst that
// never ends never collects here: V8's own limit handles a steady state.
import { performance } from 'node:perf_hooks';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';

export interface QuietGcOptions {
  /** Events since the last collection that make a collection worth it (default 100). */
  minEvents?: number;
  /** How long no event may arrive before the collection runs (ms, default 2000: the
   *  departures of one burst come within a second). */
  quietMs?: number;
  /** The collection (default: V8's full GC, see fullGc; nothing when the runtime refuses). */
  collect?: () => void;
  /**
   * Whether collecting now is harmless (default: always). A full collection stops the process
   * for tens of ms (66 ms measured in a worker holding 2,000 viewers on a shared core): a
   * worker collects only once it holds few viewers. When this says no, the events are
   * forgotten: V8's own collections look after a process that stays busy.
   */
  when?: () => boolean;
}

export class QuietGc {
  private events = 0;
  private lastAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly minEvents: number;
  private readonly quietMs: number;
  private readonly collect: (() => void) | null;
  private readonly when: () => boolean;
  /** Collections run so far. */
  collections = 0;

  constructor(opts: QuietGcOptions = {}) {
    this.minEvents = opts.minEvents ?? 100;
    this.quietMs = opts.quietMs ?? 2000;
    this.collect = opts.collect ?? fullGc();
    this.when = opts.when ?? (() => true);
  }

  /** `n` events that end short-lived work (a viewer left, a connection was passed on). */
  note(n = 1): void {
    if (!this.collect || this.closed) return;
    this.events += n;
    this.lastAt = performance.now();
    if (!this.timer && this.events >= this.minEvents) this.wait(this.quietMs);
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private wait(ms: number): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      const quietFor = performance.now() - this.lastAt;
      if (quietFor < this.quietMs) return this.wait(this.quietMs - quietFor);
      this.events = 0;
      if (!this.collect || !this.when()) return;
      this.collections++;
      this.collect();
    }, Math.max(1, Math.ceil(ms)));
    this.timer.unref();
  }
}

let exposed: (() => void) | null | undefined;

/**
 * V8's full (mark-compact) collection, taken without starting node with `--expose-gc`: the
 * flag is set for a moment, a new context's `gc` is kept, and the flag is unset again so no
 * context (a worker thread) made later gets a global `gc` (call it before starting threads).
 * With `--expose-gc` given, the global one. Null when the runtime refuses.
 */
export function fullGc(): (() => void) | null {
  if (exposed !== undefined) return exposed;
  // Started with --expose-gc: use it, and leave the flag as the user set it.
  const global = (globalThis as { gc?: unknown }).gc;
  if (typeof global === 'function') return (exposed = global as () => void);
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('gc');
    exposed = typeof gc === 'function' ? (gc as () => void) : null;
  } catch {
    exposed = null;
  } finally {
    v8.setFlagsFromString('--no-expose-gc');
  }
  return exposed;
}
