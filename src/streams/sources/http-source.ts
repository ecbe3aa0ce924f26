// The owner side of a live stream: one upstream GET feeding the Channel, retried on the same
// URL (connect errors, HTTP errors, chunk timeouts, drops) and then moved down the failover
// list. It never slows down for viewers: the Channel ring absorbs them.
import type { Logger } from '../../logger.js';
import { redactUrl } from '../../redact.js';
import type { Channel } from '../live/channel.js';
import type { StreamDefinition } from '../stream-definition.js';
import type { StreamTelemetry } from '../stream-telemetry.js';
import { openUpstream, tlsVerifyFor, UpstreamError } from './upstream.js';
import { sniff } from '../mpegts/sniff.js';
import { isRefusal } from '../live/idle-sources.js';

export type FailoverReason =
  | 'connect_error'
  | 'http_error'
  | 'not_media'
  | 'chunk_timeout'
  | 'silent_close'
  | 'manual';

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
  /** 0 = the length of the failover list. */
  maxFailoverAttempts: number;
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
  /** Connects and errors are counted here (metrics). */
  telemetry?: StreamTelemetry;
}

export interface FailoverInfo {
  oldUrl: string;
  newUrl: string;
  failoverIndex: number;
  attemptNumber: number;
  reason: FailoverReason;
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
  /** The connection delivered data for longer than the chunk timeout: a healthy run. */
  healthy: boolean;
}

/** Time for a stopped source's connection to close at the provider before the retry. */
const FREED_PAUSE_MS = 150;

const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal.aborted) return resolve();
    // The signal lives as long as the source: a listener left per retry would pile up.
    const onAbort = (): void => {
      clearTimeout(t);
      resolve();
    };
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });

export class HttpSource {
  /** -1 while on the primary URL. */
  failoverIndex = -1;
  failoverAttempts = 0;
  errorCount = 0;
  /** Body bytes received from upstreams (all URLs, all connections). */
  bytesIn = 0;
  lastFailoverTime: string | null = null;
  private readonly stopper = new AbortController();
  private current: AbortController | null = null;
  private pendingManual = false;
  private replacement: { start(): void; stop(): void } | null = null;
  /** An upstream GET has no process of its own. */
  readonly pid = null;

  constructor(private readonly opts: HttpSourceOptions) {}

  get currentUrl(): string {
    const { def } = this.opts;
    return this.failoverIndex < 0 ? def.url : def.failoverUrls[this.failoverIndex] ?? def.url;
  }

  get stopped(): boolean {
    return this.stopper.signal.aborted;
  }

  start(): void {
    void this.run().catch((err: unknown) => {
      this.opts.logger.error('live source crashed', { stream_id: this.opts.def.id, error: String(err) });
      this.opts.channel.end(err instanceof Error ? err : new Error(String(err)));
    });
  }

  stop(): void {
    this.stopper.abort();
    this.current?.abort();
    this.replacement?.stop();
  }

  /** Whether another source is left to switch to. */
  hasNextFailover(): boolean {
    const { def, maxFailoverAttempts } = this.opts;
    const max = maxFailoverAttempts > 0 ? maxFailoverAttempts : def.failoverUrls.length;
    return this.failoverIndex + 1 < def.failoverUrls.length && this.failoverAttempts < max;
  }

  /** Switches to the next failover URL now (API `POST /streams/{id}/failover`). */
  manualFailover(): boolean {
    if (!this.hasNextFailover()) return false;
    this.advance('manual'); // at once, exactly once: the answer reports the new URL
    this.pendingManual = true;
    this.current?.abort();
    return true;
  }

  private async run(): Promise<void> {
    const { channel, retryAttempts, totalTimeoutMs } = this.opts;
    let retries = 0;
    let since = Date.now();
    while (!this.stopped) {
      const outcome = await this.connect(this.currentUrl);
      if (this.stopped) return;
      if (this.pendingManual) {
        this.pendingManual = false;
        retries = 0;
        since = Date.now();
        continue;
      }
      this.errorCount++;
      if (outcome.reason !== 'manual') this.opts.telemetry?.upstreamError(outcome.reason);
      // Refused while our own idle sources to the same provider linger: free them, retry now.
      if (outcome.reason === 'http_error' && isRefusal(outcome.statusCode) && this.opts.onRefused?.(this.currentUrl)) {
        this.opts.logger.info('upstream refused; stopped idle sources to the same host, retrying', {
          stream_id: this.opts.def.id, status: outcome.statusCode,
        });
        await sleep(FREED_PAUSE_MS, this.stopper.signal);
        continue;
      }
      if (outcome.healthy) {
        retries = 0;
        since = Date.now();
      }
      // A provider that closes cleanly or answers non-media will not take us back: move on.
      const moveOn = outcome.reason === 'silent_close' || outcome.reason === 'not_media';
      if (!(moveOn && this.hasNextFailover())) {
        retries++;
        if (retries <= retryAttempts && Date.now() - since < totalTimeoutMs) {
          this.opts.logger.info('live source retrying', {
            stream_id: this.opts.def.id, reason: outcome.reason, attempt: retries, detail: outcome.message,
          });
          await sleep(this.retryDelay(retries), this.stopper.signal);
          continue;
        }
      }
      if (this.hasNextFailover()) {
        this.advance(outcome.reason);
        retries = 0;
        since = Date.now();
        continue;
      }
      const error = new SourceError(outcome.message, outcome.reason, outcome.statusCode, retries);
      this.opts.logger.warn('live source failed', {
        stream_id: this.opts.def.id, reason: outcome.reason, detail: outcome.message,
      });
      this.opts.onFailed?.(error);
      channel.end(error);
      return;
    }
  }

  private retryDelay(attempt: number): number {
    const { retryDelayMs, exponentialBackoff } = this.opts;
    return exponentialBackoff ? retryDelayMs * 2 ** (attempt - 1) : retryDelayMs;
  }

  private advance(reason: FailoverReason): void {
    const oldUrl = this.currentUrl;
    this.failoverIndex++;
    this.failoverAttempts++;
    this.lastFailoverTime = new Date().toISOString();
    const info: FailoverInfo = {
      oldUrl, newUrl: this.currentUrl, failoverIndex: this.failoverIndex,
      attemptNumber: this.failoverAttempts, reason,
    };
    this.opts.logger.warn('live source failover', {
      stream_id: this.opts.def.id, reason, failover_index: this.failoverIndex,
      new_url: redactUrl(info.newUrl),
    });
    this.opts.onFailover?.(info);
  }

  private async connect(url: string): Promise<Outcome> {
    const { def, channel, chunkTimeoutMs } = this.opts;
    const ac = new AbortController();
    this.current = ac;
    const fail = (reason: FailoverReason, message: string, statusCode: number | null = null): Outcome =>
      ({ reason, message, statusCode, healthy: false });
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
    const playlist = (): void => {
      this.stop();
      // The HLS reader feeds the same channel from now on; stop() stops it too.
      this.replacement = this.opts.onPlaylist!();
      this.replacement.start();
    };
    return new Promise<Outcome>((resolve) => {
      let firstAt = 0;
      let settled = false;
      const finish = (reason: FailoverReason, message: string): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        res.destroy();
        const healthy = firstAt > 0 && Date.now() - firstAt >= chunkTimeoutMs;
        resolve({ reason, message, statusCode: res.statusCode ?? null, healthy });
      };
      const timer = setTimeout(
        () => finish('chunk_timeout', `no data from upstream for ${chunkTimeoutMs} ms`),
        chunkTimeoutMs,
      );
      res.on('data', (chunk: Buffer) => {
        if (firstAt === 0) firstAt = Date.now();
        timer.refresh();
        this.bytesIn += chunk.length;
        if (held) {
          held = held.length > 0 ? Buffer.concat([held, chunk]) : chunk;
          const found = sniff(held);
          if (found.kind === 'need_more') return;
          this.opts.telemetry?.upstreamConnected(found.kind !== 'document');
          if (found.kind === 'document' && found.what === 'a playlist' && this.opts.onPlaylist && this.failoverIndex < 0) {
            finish('not_media', 'upstream answered an HLS playlist');
            return playlist();
          }
          if (found.kind === 'document') return finish('not_media', `upstream answered ${found.what}, not media`);
          chunk = held;
          held = null;
        }
        channel.write(chunk);
      });
      res.once('end', () => finish('silent_close', 'upstream closed the stream'));
      res.once('error', (err) => finish('connect_error', err.message));
      res.once('close', () => finish(ac.signal.aborted ? 'manual' : 'connect_error', 'upstream connection lost'));
    });
  }
}
