// Where a live source goes next when its URL fails: down `failover_urls` in order, then (or
// instead) to the editor's `failover_resolver_url` (API.md §5.2), bounded by
// MAX_FAILOVER_ATTEMPTS per walk. After a walk is exhausted the owner may start over at the
// primary (a provider that failed a minute ago may be back). Shared by the HTTP and the FFmpeg
// sources; it holds the figures /streams reports.
import type { Logger } from '../../logger.js';
import { redactUrl } from '../../redact.js';
import type { StreamDefinition } from '../stream-definition.js';

export type FailoverReason =
  | 'connect_error'
  | 'http_error'
  | 'not_media'
  | 'chunk_timeout'
  | 'silent_close'
  | 'low_bitrate'
  | 'silence'
  | 'missing_track'
  | 'ffmpeg_input_error'
  | 'manual'
  | 'primary_retry';

export interface FailoverInfo {
  oldUrl: string;
  newUrl: string;
  failoverIndex: number;
  attemptNumber: number;
  reason: FailoverReason;
}

/** The figures of API.md §3.4 (+ the last reason), as the owner reports them. */
export interface SourceState {
  currentUrl: string;
  failoverIndex: number;
  failoverAttempts: number;
  lastFailoverTime: string | null;
  lastFailoverReason: FailoverReason | null;
  errorCount: number;
  lastStatusCode: number | null;
}

export interface FailoverPlanOptions {
  def: StreamDefinition;
  logger: Logger;
  /** MAX_FAILOVER_ATTEMPTS: 0 = the list's length (999 with a resolver). */
  maxFailoverAttempts: number;
  resolverTimeoutMs?: number;
  onChange?: (state: SourceState) => void;
}

const RESOLVER_TIMEOUT_MS = 10_000;
const WITH_RESOLVER_MAX = 999;

export class FailoverPlan {
  private def: StreamDefinition;
  /** -1 on the primary; then 0, 1, … for each switch of this walk. */
  private index = -1;
  /** Switches in the current walk (bounded by MAX_FAILOVER_ATTEMPTS). */
  private walk = 0;
  /** A URL the resolver named (null while on the list). */
  private resolved: string | null = null;
  private attempts = 0;
  private lastTime: string | null = null;
  private lastReason: FailoverReason | null = null;
  errorCount = 0;
  lastStatusCode: number | null = null;

  constructor(private readonly opts: FailoverPlanOptions) {
    this.def = opts.def;
  }

  get currentUrl(): string {
    if (this.index < 0) return this.def.url;
    return this.resolved ?? this.def.failoverUrls[this.index] ?? this.def.url;
  }

  get failoverIndex(): number {
    return this.index;
  }

  get failoverAttempts(): number {
    return this.attempts;
  }

  get lastFailoverTime(): string | null {
    return this.lastTime;
  }

  get hasAlternatives(): boolean {
    return this.def.failoverUrls.length > 0 || this.def.failoverResolverUrl !== null;
  }

  get definition(): StreamDefinition {
    return this.def;
  }

  state(): SourceState {
    return {
      currentUrl: this.currentUrl, failoverIndex: this.index, failoverAttempts: this.attempts,
      lastFailoverTime: this.lastTime, lastFailoverReason: this.lastReason, errorCount: this.errorCount,
      lastStatusCode: this.lastStatusCode,
    };
  }

  /** A re-POSTed definition: new list, resolver and headers apply from the next switch/connect. */
  update(def: StreamDefinition): void {
    this.def = def;
    this.changed();
  }

  /** Counts a failed connection (for error_count). */
  failed(statusCode: number | null): void {
    this.errorCount++;
    this.lastStatusCode = statusCode;
    this.changed();
  }

  /** The next source of this walk, or null when there is none (list and resolver exhausted). */
  async next(reason: FailoverReason): Promise<FailoverInfo | null> {
    const { def } = this;
    const resolver = def.failoverResolverUrl;
    const max = this.opts.maxFailoverAttempts > 0
      ? this.opts.maxFailoverAttempts
      : resolver ? WITH_RESOLVER_MAX : def.failoverUrls.length;
    if (this.walk >= max) return null;
    const oldUrl = this.currentUrl;
    const listNext = this.resolved === null ? this.index + 1 : def.failoverUrls.length;
    if (listNext < def.failoverUrls.length) return this.switchTo(listNext, null, oldUrl, reason);
    if (!resolver) return null;
    const url = await this.resolve(resolver, oldUrl, reason);
    return url ? this.switchTo(this.index + 1, url, oldUrl, reason) : null;
  }

  /** Starts a new walk at the primary (after the last one was exhausted). */
  restart(): FailoverInfo {
    const oldUrl = this.currentUrl;
    this.walk = 0;
    return this.switchTo(-1, null, oldUrl, 'primary_retry', false);
  }

  private switchTo(index: number, resolved: string | null, oldUrl: string, reason: FailoverReason, counts = true): FailoverInfo {
    this.index = index;
    this.resolved = resolved;
    if (counts) this.walk++;
    this.attempts++;
    this.lastTime = new Date().toISOString();
    this.lastReason = reason;
    const info: FailoverInfo = { oldUrl, newUrl: this.currentUrl, failoverIndex: index, attemptNumber: this.attempts, reason };
    this.opts.logger.warn('live source failover', {
      stream_id: this.def.id, reason, failover_index: index, new_url: redactUrl(info.newUrl),
    });
    this.changed();
    return info;
  }

  /**
   * POSTs `{current_url, metadata, current_failover_index, status_code, reason}` to the resolver;
   * its `next_url` (an http(s) URL) or null. A timeout, an error, a non-2xx or a body without a
   * usable `next_url` all mean "no further source".
   */
  private async resolve(resolver: string, currentUrl: string, reason: FailoverReason): Promise<string | null> {
    const { def, logger } = { def: this.def, logger: this.opts.logger };
    try {
      const res = await fetch(resolver, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify({
          current_url: currentUrl, metadata: def.metadata, current_failover_index: this.index,
          status_code: this.lastStatusCode, reason,
        }),
        signal: AbortSignal.timeout(this.opts.resolverTimeoutMs ?? RESOLVER_TIMEOUT_MS),
      });
      if (!res.ok) {
        await res.body?.cancel().catch(() => undefined);
        logger.warn('failover resolver answered an error', { stream_id: def.id, status: res.status });
        return null;
      }
      const body = (await res.json()) as { next_url?: unknown };
      const next = typeof body?.next_url === 'string' ? body.next_url : null;
      if (next && !isHttpUrl(next)) {
        logger.warn('failover resolver named a URL that is not http(s)', { stream_id: def.id });
        return null;
      }
      return next;
    } catch (err) {
      logger.warn('failover resolver failed', { stream_id: def.id, error: err instanceof Error ? err.message : String(err) });
      return null;
    }
  }

  private changed(): void {
    this.opts.onChange?.(this.state());
  }
}

function isHttpUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
  } catch {
    return false;
  }
}
