// Delivers event envelopes to the registered webhooks (API.md §5.1), off the hot path: a
// bounded queue per webhook URL, a few POSTs in flight per URL, each retried with 2^n s
// back-off. A webhook that hangs or answers 500 fills only its own queue; what does not fit
// is dropped, counted and logged, so a dead endpoint never grows memory nor slows streaming.
import { setMaxListeners } from 'node:events';
import type { Coordinator, WebhookRegistration } from '../../coordination/coordinator.js';
import type { Logger } from '../../logger.js';
import { redactUrl } from '../../redact.js';
import { abortableSleep } from '../abortable-sleep.js';

/** API.md §5.1's envelope. */
export interface EventEnvelope {
  event_id: string;
  event_type: string;
  stream_id: string;
  /** ISO-8601 UTC with `Z`. */
  timestamp: string;
  data: Record<string, unknown>;
}

export interface WebhookDispatcherOptions {
  coordinator: Coordinator;
  logger: Logger;
  /** Deliveries waiting per webhook URL before new ones are dropped. */
  queueLimit?: number;
  /** POSTs in flight per webhook URL. */
  concurrency?: number;
  /** How long the registration list is cached (a `webhooks_changed` event clears it at once). */
  cacheMs?: number;
  /** Back-off before retry n (0-based), in ms; API.md §5.1: 2^n s. */
  backoffMs?: (retry: number) => number;
}

export interface DeliveryStats {
  queued: number;
  in_flight: number;
  delivered: number;
  failed: number;
  dropped: number;
  retries: number;
}

interface Job {
  hook: WebhookRegistration;
  event: EventEnvelope;
  body: string;
  queuedAt: number;
}

interface HookQueue {
  jobs: Job[];
  active: number;
}

export const WEBHOOK_USER_AGENT = 'M3U-Proxy-Webhook/1.0';
export const WEBHOOKS_CHANGED = 'webhooks_changed';
const DEFAULT_QUEUE_LIMIT = 1000;
const DEFAULT_CONCURRENCY = 4;
const DEFAULT_CACHE_MS = 5000;
const DROP_LOG_EVERY_MS = 10_000;


export class WebhookDispatcher {
  private readonly queues = new Map<string, HookQueue>();
  private readonly stopper = new AbortController();
  private cached: { at: number; hooks: Promise<WebhookRegistration[]> } | null = null;
  private readonly counts = { delivered: 0, failed: 0, dropped: 0, retries: 0 };
  private lastDropLog = 0;
  private droppedSinceLog = 0;
  private readonly unsubscribe: () => void;
  /** Delivery latency (queued → 2xx) of the latest deliveries, newest last, in ms. */
  readonly latencies: number[] = [];

  constructor(private readonly opts: WebhookDispatcherOptions) {
    setMaxListeners(0, this.stopper.signal); // one listener per POST or back-off in flight
    this.unsubscribe = opts.coordinator.subscribe((e) => {
      if (e.type === WEBHOOKS_CHANGED) this.invalidate();
    });
  }

  /** Forgets the cached registrations (after a change here or on another worker). */
  invalidate(): void {
    this.cached = null;
  }

  /** The registrations, cached for a few seconds; [] when the coordinator cannot answer. */
  hooks(): Promise<WebhookRegistration[]> {
    const cacheMs = this.opts.cacheMs ?? DEFAULT_CACHE_MS;
    if (!this.cached || Date.now() - this.cached.at > cacheMs) {
      const hooks = this.opts.coordinator.listWebhooks().catch((err: unknown) => {
        this.opts.logger.warn('webhook registrations unreadable', { error: String(err) });
        this.cached = null;
        return [];
      });
      this.cached = { at: Date.now(), hooks };
    }
    return this.cached.hooks;
  }

  /** Queues an event for every webhook that wants its type. Never throws, never waits. */
  dispatch(event: EventEnvelope): void {
    if (this.stopper.signal.aborted) return;
    void this.hooks().then((hooks) => {
      let body: string | null = null;
      for (const hook of hooks) {
        if (hook.events.length > 0 && !hook.events.includes(event.event_type)) continue;
        body ??= JSON.stringify(event);
        this.enqueue({ hook, event, body, queuedAt: Date.now() });
      }
    });
  }

  /** One delivery now, with the webhook's retries (POST /webhooks/test); true on a 2xx/3xx. */
  deliverNow(hook: WebhookRegistration, event: EventEnvelope): Promise<boolean> {
    return this.deliver({ hook, event, body: JSON.stringify(event), queuedAt: Date.now() });
  }

  stats(): DeliveryStats {
    let queued = 0;
    let inFlight = 0;
    for (const q of this.queues.values()) {
      queued += q.jobs.length;
      inFlight += q.active;
    }
    return { queued, in_flight: inFlight, ...this.counts };
  }

  /** Waits until nothing is queued or in flight, or `ms` passed. */
  async flush(ms: number): Promise<void> {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      const { queued, in_flight } = this.stats();
      if (queued + in_flight === 0) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Stops delivering: in-flight POSTs are aborted, queued ones dropped. */
  close(): void {
    this.unsubscribe();
    this.stopper.abort();
    this.queues.clear();
  }

  private enqueue(job: Job): void {
    let q = this.queues.get(job.hook.url);
    if (!q) {
      q = { jobs: [], active: 0 };
      this.queues.set(job.hook.url, q);
    }
    if (q.jobs.length >= (this.opts.queueLimit ?? DEFAULT_QUEUE_LIMIT)) {
      this.counts.dropped++;
      this.droppedSinceLog++;
      const now = Date.now();
      if (now - this.lastDropLog >= DROP_LOG_EVERY_MS) {
        this.opts.logger.warn('webhook queue full, events dropped', {
          webhook_url: redactUrl(job.hook.url), dropped: this.droppedSinceLog, dropped_total: this.counts.dropped,
        });
        this.lastDropLog = now;
        this.droppedSinceLog = 0;
      }
      return;
    }
    q.jobs.push(job);
    this.pump(job.hook.url, q);
  }

  private pump(url: string, q: HookQueue): void {
    const max = this.opts.concurrency ?? DEFAULT_CONCURRENCY;
    while (q.active < max && q.jobs.length > 0 && !this.stopper.signal.aborted) {
      const job = q.jobs.shift()!;
      q.active++;
      void this.deliver(job).finally(() => {
        q.active--;
        if (q.jobs.length === 0 && q.active === 0) {
          if (this.queues.get(url) === q) this.queues.delete(url);
        } else this.pump(url, q);
      });
    }
  }

  private async deliver(job: Job): Promise<boolean> {
    const { hook, event } = job;
    const backoff = this.opts.backoffMs ?? ((n: number) => 1000 * 2 ** n);
    let last = '';
    for (let attempt = 0; attempt <= hook.retryAttempts; attempt++) {
      if (this.stopper.signal.aborted) return false;
      if (attempt > 0) {
        this.counts.retries++;
        await abortableSleep(backoff(attempt - 1), this.stopper.signal);
        if (this.stopper.signal.aborted) return false;
      }
      try {
        const res = await fetch(hook.url, {
          method: 'POST',
          headers: { ...hook.headers, 'Content-Type': 'application/json', 'User-Agent': WEBHOOK_USER_AGENT },
          body: job.body,
          redirect: 'manual',
          signal: AbortSignal.any([AbortSignal.timeout(hook.timeout * 1000), this.stopper.signal]),
        });
        await res.body?.cancel().catch(() => undefined);
        if (res.status < 400) {
          this.counts.delivered++;
          this.latencies.push(Date.now() - job.queuedAt);
          if (this.latencies.length > 100) this.latencies.shift();
          return true;
        }
        last = `status ${res.status}`;
      } catch (err) {
        last = err instanceof Error ? (err.name === 'TimeoutError' ? `no answer in ${hook.timeout} s` : err.message) : String(err);
      }
    }
    this.counts.failed++;
    this.opts.logger.warn('webhook delivery failed', {
      webhook_url: redactUrl(hook.url), event_type: event.event_type, event_id: event.event_id,
      attempts: hook.retryAttempts + 1, error: last,
    });
    return false;
  }
}
