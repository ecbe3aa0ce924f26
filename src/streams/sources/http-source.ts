// The owner side of a live stream: one upstream GET feeding the Channel, retried on the same
// URL (connect errors, HTTP errors, chunk timeouts) and moved down the failover list or to the
// resolver (FailoverPlan). It never slows down for viewers: the Channel ring absorbs them.
//
// Retry accounting counts what actually failed (API.md §5.2, issue 16):
// - a connection that delivered data for HEALTHY_RUN_MS and then closed cleanly is a provider
//   rotating its connections, not a failure: reconnect at once, nothing counted;
// - a stall, an error or an error status counts, and only a long stable run of *data*
//   (STABLE_RUN_MS, silent periods excluded) earns the retry budget back;
// - a clean close right after connecting, a non-media answer, a low bitrate, silence, a
//   missing track and a manual request move on at once (a provider at its connection limit
//   will not take us back).
// After the walk is exhausted, a stream that still has viewers starts over at the primary
// after a back-off instead of cutting them; one with no data yet fails (a 502 for the waiters).
import type { Logger } from '../../logger.js';
import type { Channel } from '../live/channel.js';
import { SpliceFilter } from '../mpegts/splice.js';
import type { StreamDefinition } from '../stream-definition.js';
import type { StreamTelemetry, UpstreamErrorReason } from '../stream-telemetry.js';
import { FailoverPlan, type FailoverInfo, type FailoverReason, type SourceState } from './failover-plan.js';
import { openUpstream, tlsVerifyFor, UpstreamError } from './upstream.js';
import { sniff } from '../mpegts/sniff.js';
import { isRefusal } from '../live/idle-sources.js';
import { abortableSleep } from '../abortable-sleep.js';

export type { FailoverInfo, FailoverReason, SourceState } from './failover-plan.js';

export interface BitrateMonitoring {
  /** Bytes per second under which a check counts as low. */
  minBytesPerSecond: number;
  checkIntervalMs: number;
  /** Consecutive low checks that trigger a failover. */
  failoverThreshold: number;
  /** No checks this long after a connection starts. */
  graceMs: number;
}

export interface HttpSourceOptions {
  def: StreamDefinition;
  channel: Channel;
  logger: Logger;
  defaultUserAgent: string;
  connectTimeoutMs: number;
  chunkTimeoutMs: number;
  retryAttempts: number;
  retryDelayMs: number;
  exponentialBackoff: boolean;
  totalTimeoutMs: number;
  /** 0 = the length of the failover list (999 with a resolver). */
  maxFailoverAttempts: number;
  /** ENABLE_BITRATE_MONITORING and its settings; null = off. */
  bitrate?: BitrateMonitoring | null;
  /** Whether anyone still watches (after the walk is exhausted, keep trying while true). */
  hasViewers?: () => boolean;
  onFailover?: (info: FailoverInfo) => void;
  /**
   * The primary URL answered an HLS playlist (its bytes start `#EXTM3U`): this source
   * stops and starts the source this returns instead (the HLS reader, feeding the same
   * channel), as API.md §3.1 asks. Unset: a playlist is `not_media`.
   */
  onPlaylist?: () => { start(): void; stop(): void };
  /**
   * The upstream refused (403, 429, 458, 503, …): stop this worker's idle sources to the same
   * host; true when one was stopped (then the request is retried at once).
   */
  onRefused?: (url: string) => boolean;
  /** The source gave up: retries and failover exhausted. */
  onFailed?: (error: SourceError) => void;
  /** The reported figures changed (current URL, index, attempts, errors). */
  onState?: (state: SourceState) => void;
  /** Watches the content (silence, tracks): restarted per connection, fed every chunk. */
  monitor?: ContentMonitor | null;
  /** Connects and errors are counted here (metrics). */
  telemetry?: StreamTelemetry;
}

/** A side watcher of the upstream bytes (silence-monitor.ts); it never blocks the fan-out. */
export interface ContentMonitor {
  restart(): void;
  write(chunk: Buffer): void;
  stop(): void;
}

export class SourceError extends Error {
  constructor(
    message: string,
    readonly reason: FailoverReason,
    readonly statusCode: number | null,
    readonly retryCount: number,
  ) {
    super(message);
    this.name = 'SourceError';
  }
}

interface Outcome {
  reason: FailoverReason;
  message: string;
  statusCode: number | null;
  /** How long data flowed on this connection (first to last chunk), silent periods excluded. */
  dataMs: number;
}

/** Time for a stopped source's connection to close at the provider before the retry. */
const FREED_PAUSE_MS = 150;
/** A data run this long that ends in a clean close is a rotation, not a failure. */
const HEALTHY_RUN_MS = 2000;
/** A data run this long earns the retry budget back. */
const STABLE_RUN_MS = 60_000;
/** Back-off before starting over at the primary after an exhausted walk: doubles up to the max. */
const RESTART_MIN_MS = 1000;
const RESTART_MAX_MS = 30_000;
/** Reasons that move on at once instead of retrying the same URL. */
const AT_ONCE: ReadonlySet<FailoverReason> = new Set([
  'silent_close', 'not_media', 'low_bitrate', 'silence', 'missing_track', 'manual',
]);
/** The upstream errors the metrics count (the others are health triggers or requests). */
const TELEMETRY_REASONS: ReadonlySet<FailoverReason> = new Set([
  'connect_error', 'http_error', 'not_media', 'chunk_timeout', 'silent_close',
]);


export class HttpSource {
  readonly plan: FailoverPlan;
  private readonly stopper = new AbortController();
  private current: AbortController | null = null;
  /** A switch requested from outside (manual, a monitor) while a connection runs. */
  private trigger: { reason: FailoverReason; done: (switched: boolean) => void } | null = null;
  private connections = 0;
  private replacement: { start(): void; stop(): void } | null = null;
  /** An upstream GET has no process of its own. */
  readonly pid = null;
  /** Body bytes received from upstreams (all URLs, all connections). */
  bytesIn = 0;

  constructor(private readonly opts: HttpSourceOptions) {
    this.plan = new FailoverPlan({
      def: opts.def, logger: opts.logger, maxFailoverAttempts: opts.maxFailoverAttempts, onChange: opts.onState,
    });
  }

  get currentUrl(): string {
    return this.plan.currentUrl;
  }

  get failoverIndex(): number {
    return this.plan.failoverIndex;
  }

  get failoverAttempts(): number {
    return this.plan.failoverAttempts;
  }

  get errorCount(): number {
    return this.plan.errorCount;
  }

  get lastFailoverTime(): string | null {
    return this.plan.lastFailoverTime;
  }

  get stopped(): boolean {
    return this.stopper.signal.aborted;
  }

  start(): void {
    this.opts.onState?.(this.plan.state());
    void this.run().catch((err: unknown) => {
      this.opts.logger.error('live source crashed', { stream_id: this.opts.def.id, error: String(err) });
      this.opts.channel.end(err instanceof Error ? err : new Error(String(err)));
    });
  }

  stop(): void {
    this.stopper.abort();
    this.current?.abort();
    this.opts.monitor?.stop();
    this.replacement?.stop();
    this.trigger?.done(false);
    this.trigger = null;
  }

  /** A re-POSTed definition: the next connect uses its headers, the next switch its list. */
  updateDefinition(def: StreamDefinition): void {
    this.plan.update(def);
  }

  /**
   * Switches to the next source now (API `POST /streams/{id}/failover`, or a health monitor):
   * exactly one advance. Resolves false when there is no further source (the current
   * connection is then kept).
   */
  switchNow(reason: FailoverReason): Promise<boolean> {
    if (this.stopped || !this.plan.hasAlternatives) return Promise.resolve(false);
    if (this.trigger) return Promise.resolve(false); // one switch at a time
    return new Promise<boolean>((done) => {
      this.trigger = { reason, done };
      this.current?.abort();
    });
  }

  private async run(): Promise<void> {
    const { channel, retryAttempts, totalTimeoutMs, logger } = this.opts;
    const id = this.opts.def.id;
    let failures = 0;
    let since = Date.now();
    let restartDelay = RESTART_MIN_MS;
    while (!this.stopped) {
      const outcome = await this.connect(this.currentUrl);
      if (this.stopped) return;
      const trigger = this.trigger;
      this.trigger = null;
      if (trigger) {
        // Asked from outside: advance exactly once, or stay on this URL when nothing is left.
        const info = await this.plan.next(trigger.reason);
        trigger.done(info !== null);
        if (info) this.opts.onFailover?.(info);
        failures = 0;
        since = Date.now();
        continue;
      }
      if (outcome.reason === 'silent_close' && outcome.dataMs >= HEALTHY_RUN_MS) {
        logger.info('live source rotated its connection, reconnecting', { stream_id: id, data_ms: outcome.dataMs });
        failures = 0;
        since = Date.now();
        continue;
      }
      this.plan.failed(outcome.statusCode);
      if (TELEMETRY_REASONS.has(outcome.reason)) this.opts.telemetry?.upstreamError(outcome.reason as UpstreamErrorReason);
      // Refused while our own idle sources to the same provider linger: free them, retry now.
      if (outcome.reason === 'http_error' && isRefusal(outcome.statusCode) && this.opts.onRefused?.(this.currentUrl)) {
        logger.info('upstream refused; stopped idle sources to the same host, retrying', { stream_id: id, status: outcome.statusCode });
        await abortableSleep(FREED_PAUSE_MS, this.stopper.signal);
        continue;
      }
      if (outcome.dataMs >= STABLE_RUN_MS) {
        failures = 0;
        since = Date.now();
        restartDelay = RESTART_MIN_MS;
      }
      // With nowhere to go, a clean close or a non-media answer is retried like any error.
      const atOnce = AT_ONCE.has(outcome.reason) && this.plan.hasAlternatives;
      if (!atOnce) {
        failures++;
        if (failures <= retryAttempts && Date.now() - since < totalTimeoutMs) {
          logger.info('live source retrying', { stream_id: id, reason: outcome.reason, attempt: failures, detail: outcome.message });
          await abortableSleep(this.retryDelay(failures), this.stopper.signal);
          continue;
        }
      }
      const info = await this.plan.next(outcome.reason);
      if (this.stopped) return;
      if (info) {
        this.opts.onFailover?.(info);
        failures = 0;
        since = Date.now();
        continue;
      }
      // The walk is exhausted. Viewers who are watching keep their connection (null packets)
      // while the primary is tried again after a back-off.
      if (this.plan.hasAlternatives && channel.hasData && (this.opts.hasViewers?.() ?? false)) {
        logger.warn('failover exhausted, retrying the primary after a back-off', { stream_id: id, delay_ms: restartDelay });
        await abortableSleep(restartDelay, this.stopper.signal);
        if (this.stopped) return;
        restartDelay = Math.min(restartDelay * 2, RESTART_MAX_MS);
        this.opts.onFailover?.(this.plan.restart());
        failures = 0;
        since = Date.now();
        continue;
      }
      const error = new SourceError(outcome.message, outcome.reason, outcome.statusCode, failures);
      logger.warn('live source failed', { stream_id: id, reason: outcome.reason, detail: outcome.message });
      this.opts.onFailed?.(error);
      channel.end(error);
      return;
    }
  }

  private retryDelay(attempt: number): number {
    const { retryDelayMs, exponentialBackoff } = this.opts;
    return exponentialBackoff ? retryDelayMs * 2 ** (attempt - 1) : retryDelayMs;
  }

  private async connect(url: string): Promise<Outcome> {
    const { channel, chunkTimeoutMs } = this.opts;
    const def = this.plan.definition;
    const ac = new AbortController();
    this.current = ac;
    if (this.trigger) ac.abort(); // a switch was asked for between two connections
    const fail = (reason: FailoverReason, message: string, statusCode: number | null = null): Outcome =>
      ({ reason, message, statusCode, dataMs: 0 });
    let res;
    try {
      ({ res } = await openUpstream({
        url,
        headers: { 'User-Agent': def.userAgent ?? this.opts.defaultUserAgent, ...def.headers },
        timeoutMs: this.opts.connectTimeoutMs,
        signal: ac.signal,
        tlsVerify: tlsVerifyFor(def),
      }));
    } catch (err) {
      this.opts.telemetry?.upstreamConnected(false);
      if (err instanceof UpstreamError) {
        const reason = err.kind === 'http_error' ? 'http_error' : 'connect_error';
        return fail(reason, err.message, err.statusCode);
      }
      return fail('connect_error', String(err));
    }
    // What the body is, is told by its bytes (mpegts/sniff.ts), never by its Content-Type:
    // good MPEG-TS labelled text/html plays, an HTML or playlist answer is not media.
    const type = res.headers['content-type'];
    if (typeof type === 'string') channel.sourceContentType = type;
    let held: Buffer | null = Buffer.alloc(0); // the first bytes, until sniff() decides
    // Every connection after the first joins at a PAT with its discontinuity flagged.
    const splice = this.connections++ > 0 ? new SpliceFilter() : null;
    if (splice) channel.restartInput();
    this.opts.monitor?.restart();
    const bitrate = this.opts.bitrate ?? null;
    return new Promise<Outcome>((resolve) => {
      let firstAt = 0;
      let lastAt = 0;
      let settled = false;
      let windowBytes = 0;
      let low = 0;
      const openedAt = Date.now();
      const finish = (reason: FailoverReason, message: string): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (check) clearInterval(check);
        res.destroy();
        resolve({ reason, message, statusCode: res.statusCode ?? null, dataMs: firstAt > 0 ? lastAt - firstAt : 0 });
      };
      const timer = setTimeout(
        () => finish('chunk_timeout', `no data from upstream for ${chunkTimeoutMs} ms`),
        chunkTimeoutMs,
      );
      const check = bitrate
        ? setInterval(() => {
          const rate = (windowBytes * 1000) / bitrate.checkIntervalMs;
          windowBytes = 0;
          if (Date.now() - openedAt < bitrate.graceMs) return;
          low = rate < bitrate.minBytesPerSecond ? low + 1 : 0;
          if (low >= bitrate.failoverThreshold) {
            finish('low_bitrate', `upstream bitrate ${Math.round(rate)} B/s under ${bitrate.minBytesPerSecond} B/s`);
          }
        }, bitrate.checkIntervalMs)
        : null;
      res.on('data', (data: Buffer) => {
        if (settled) return;
        lastAt = Date.now();
        windowBytes += data.length;
        if (firstAt === 0) firstAt = lastAt;
        timer.refresh();
        this.bytesIn += data.length;
        let chunk = data;
        if (held) {
          held = held.length > 0 ? Buffer.concat([held, chunk]) : chunk;
          const found = sniff(held);
          if (found.kind === 'need_more') return;
          this.opts.telemetry?.upstreamConnected(found.kind !== 'document');
          if (found.kind === 'document' && found.what === 'a playlist' && this.opts.onPlaylist && this.failoverIndex < 0) {
            finish('not_media', 'upstream answered an HLS playlist');
            this.stop();
            // The HLS reader feeds the same channel from now on; stop() stops it too.
            this.replacement = this.opts.onPlaylist();
            return this.replacement.start();
          }
          if (found.kind === 'document') return finish('not_media', `upstream answered ${found.what}, not media`);
          chunk = held;
          held = null;
        }
        this.opts.monitor?.write(chunk);
        channel.write(splice ? splice.push(chunk) : chunk);
      });
      res.once('end', () => finish('silent_close', 'upstream closed the stream'));
      res.once('error', (err) => finish('connect_error', err.message));
      res.once('close', () => finish(ac.signal.aborted ? 'manual' : 'connect_error', 'upstream connection lost'));
      ac.signal.addEventListener('abort', () => finish('manual', 'switched away'), { once: true });
    });
  }
}
