// The owner's side of an HLS proxy stream: every origin request of the stream, for every viewer
// on every worker, goes through here (DESIGN.md §9). Segments are single-flight: the first
// request opens the origin and the bytes are handed on as they arrive; later requests for the
// same URI read the same in-flight body from its start. Finished segments stay in a small cache
// bounded in bytes and age. Playlists are cached for half their target duration, so N pollers
// cause about two origin requests per target duration, whatever N is.
import type { Logger } from '../../logger.js';
import { redactUrl } from '../../redact.js';
import type { StreamDefinition } from '../stream-definition.js';
import { openUpstream, tlsVerifyFor, UpstreamError } from '../sources/upstream.js';
import type { HlsOwnedPart } from './hls-session.js';
import { readBody } from './owner-request.js';
import { playlistFacts } from './playlist-rewrite.js';

export interface SharedFetcherOptions {
  def: StreamDefinition;
  logger: Logger;
  defaultUserAgent: string;
  connectTimeoutMs: number;
  /** Finished segments kept at most (bytes, all together). */
  cacheBytes?: number;
  /** Finished segments kept at most this long (ms). */
  cacheAgeMs?: number;
}

/** A fetched playlist: the body, the URL it came from after redirects, and until when it is fresh. */
export interface FetchedPlaylist {
  body: Buffer;
  finalUrl: string;
  status: number;
}

/** One origin response, shared by every reader: chunks kept from the start until it is evicted. */
export class Flight {
  status = 0;
  headers: Record<string, string> = {};
  readonly chunks: Buffer[] = [];
  bytes = 0;
  done = false;
  error: Error | null = null;
  finishedAt = 0;
  private readonly waiters = new Set<() => void>();
  private readonly headWaiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  private headed = false;

  /** Resolves once the status and headers are known; rejects when the origin failed first. */
  head(): Promise<void> {
    if (this.headed) return Promise.resolve();
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => this.headWaiters.push({ resolve, reject }));
  }

  setHead(status: number, headers: Record<string, string>): void {
    this.status = status;
    this.headers = headers;
    this.headed = true;
    for (const w of this.headWaiters.splice(0)) w.resolve();
  }

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    this.wake();
  }

  finish(error?: Error): void {
    if (this.done) return;
    this.done = true;
    this.finishedAt = Date.now();
    if (error) {
      this.error = error;
      for (const w of this.headWaiters.splice(0)) w.reject(error);
    }
    this.wake();
  }

  /** The body from its first byte, as it arrives; throws when the origin failed mid-body. */
  async *read(): AsyncGenerator<Buffer> {
    let i = 0;
    for (;;) {
      while (i < this.chunks.length) yield this.chunks[i++]!;
      if (this.done) {
        if (this.error) throw this.error;
        return;
      }
      await new Promise<void>((resolve) => {
        const off = this.watch(() => {
          off();
          resolve();
        });
      });
    }
  }

  /** Calls `fn` whenever chunks arrive or the flight ends; returns the unsubscribe. */
  watch(fn: () => void): () => void {
    this.waiters.add(fn);
    return () => this.waiters.delete(fn);
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}

const DEFAULT_CACHE_BYTES = 64 * 1024 * 1024;
const DEFAULT_CACHE_AGE_MS = 60_000;
const MASTER_TTL_MS = 5000;
const MIN_PLAYLIST_TTL_MS = 250;
const MAX_PLAYLIST_BYTES = 4 * 1024 * 1024;
const PASSED = ['content-type', 'content-length', 'content-range', 'accept-ranges', 'last-modified'] as const;

interface CachedPlaylist {
  at: number;
  ttlMs: number;
  promise: Promise<FetchedPlaylist>;
}

export class SharedFetcher implements HlsOwnedPart {
  readonly pid = null;
  /** Origin requests made, by kind (what the closing note reports). */
  readonly originRequests = { playlist: 0, resource: 0 };
  private readonly flights = new Map<string, Flight>();
  private readonly playlists = new Map<string, CachedPlaylist>();
  /** use_sticky_session: a playlist URL → where its last redirect led. */
  private readonly sticky = new Map<string, string>();
  private readonly aborts = new Set<AbortController>();
  private stopped = false;

  constructor(private readonly opts: SharedFetcherOptions) {}

  /** The playlist at `url`, from the cache while fresh, else one origin request for all callers. */
  playlist(url: string): Promise<FetchedPlaylist> {
    const now = Date.now();
    const cached = this.playlists.get(url);
    if (cached && now - cached.at < cached.ttlMs) return cached.promise;
    const entry: CachedPlaylist = { at: now, ttlMs: Infinity, promise: this.fetchPlaylist(url) };
    this.playlists.set(url, entry);
    entry.promise.then(
      (p) => {
        const facts = playlistFacts(p.body.toString('utf8'), p.finalUrl);
        entry.ttlMs = facts.isMaster
          ? MASTER_TTL_MS
          : Math.max(MIN_PLAYLIST_TTL_MS, ((facts.targetDurationS ?? 2) * 1000) / 2);
        if (p.status !== 200) entry.ttlMs = 0;
      },
      () => {
        if (this.playlists.get(url) === entry) this.playlists.delete(url);
      },
    );
    return entry.promise;
  }

  /**
   * The shared flight of a segment, key, map or part: the in-flight or cached one, else a new
   * origin request. A request with a Range is not shared (its own origin request, not cached).
   */
  resource(url: string, range?: string): Flight {
    if (range) return this.open(url, range);
    const existing = this.flights.get(url);
    if (existing && !(existing.done && (existing.error || Date.now() - existing.finishedAt > this.cacheAgeMs))) return existing;
    const flight = this.open(url);
    this.flights.set(url, flight);
    flight.watch(() => {
      if (!flight.done) return;
      if (flight.error || flight.status !== 200) this.flights.delete(url);
      this.trim();
    });
    return flight;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const ac of this.aborts) ac.abort();
    this.flights.clear();
    this.playlists.clear();
  }

  private get cacheAgeMs(): number {
    return this.opts.cacheAgeMs ?? DEFAULT_CACHE_AGE_MS;
  }

  private headers(range?: string): Record<string, string> {
    const { def, defaultUserAgent } = this.opts;
    return { 'User-Agent': def.userAgent ?? defaultUserAgent, ...def.headers, ...(range ? { Range: range } : {}) };
  }

  private async fetchPlaylist(url: string): Promise<FetchedPlaylist> {
    const pinned = this.opts.def.useStickySession ? this.sticky.get(url) : undefined;
    try {
      return await this.fetchPlaylistFrom(pinned ?? url, url);
    } catch (err) {
      if (!pinned) throw err;
      // The pinned target went away: back to the original URL (and its redirects).
      this.sticky.delete(url);
      return this.fetchPlaylistFrom(url, url);
    }
  }

  private async fetchPlaylistFrom(from: string, original: string): Promise<FetchedPlaylist> {
    const ac = this.abortable();
    try {
      this.originRequests.playlist++;
      const { res, finalUrl } = await openUpstream({
        url: from, headers: this.headers(), timeoutMs: this.opts.connectTimeoutMs, signal: ac.signal, acceptErrors: true,
        tlsVerify: tlsVerifyFor(this.opts.def),
      });
      const body = await readBody(res, MAX_PLAYLIST_BYTES);
      if (this.opts.def.useStickySession && finalUrl !== original && res.statusCode === 200) this.sticky.set(original, finalUrl);
      return { body, finalUrl, status: res.statusCode ?? 502 };
    } finally {
      this.aborts.delete(ac);
    }
  }

  private open(url: string, range?: string): Flight {
    const flight = new Flight();
    if (this.stopped) {
      flight.finish(new UpstreamError('aborted', 'the HLS stream stopped'));
      return flight;
    }
    const ac = this.abortable();
    this.originRequests.resource++;
    openUpstream({ url, headers: this.headers(range), timeoutMs: this.opts.connectTimeoutMs, signal: ac.signal, acceptErrors: true, tlsVerify: tlsVerifyFor(this.opts.def) })
      .then(({ res }) => {
        const headers: Record<string, string> = {};
        for (const h of PASSED) if (res.headers[h] !== undefined) headers[h] = String(res.headers[h]);
        headers['content-type'] ??= 'application/octet-stream';
        flight.setHead(res.statusCode ?? 502, headers);
        res.on('data', (c: Buffer) => flight.push(c));
        res.once('end', () => flight.finish());
        res.once('error', (err) => flight.finish(err));
        res.once('close', () => flight.finish(res.complete ? undefined : new Error('origin closed mid-body')));
      })
      .catch((err: unknown) => {
        this.opts.logger.warn('HLS origin request failed', { stream_id: this.opts.def.id, url: redactUrl(url), error: String(err) });
        flight.finish(err instanceof Error ? err : new Error(String(err)));
      })
      .finally(() => this.aborts.delete(ac));
    return flight;
  }

  private abortable(): AbortController {
    const ac = new AbortController();
    this.aborts.add(ac);
    return ac;
  }

  /** Drops finished flights past the age bound, then the oldest until under the byte bound. */
  private trim(): void {
    const limit = this.opts.cacheBytes ?? DEFAULT_CACHE_BYTES;
    const now = Date.now();
    let total = 0;
    for (const [url, f] of this.flights) {
      if (f.done && now - f.finishedAt > this.cacheAgeMs) this.flights.delete(url);
      else total += f.bytes;
    }
    for (const [url, f] of this.flights) {
      if (total <= limit) break;
      if (!f.done) continue;
      this.flights.delete(url);
      total -= f.bytes;
    }
  }
}
