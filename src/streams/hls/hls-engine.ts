// HLS on one worker: sessions by source key (ownership, pollers, lifecycle), the managed
// directories of HLS transcodes, and the owner side of the relay listener's HLS routes. The
// HTTP layer signs and checks URIs; this layer never sees a path a client named, only names
// that match SAFE_NAME and targets whose signature was checked.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Config } from '../../config.js';
import type { Coordinator } from '../../coordination/coordinator.js';
import { AppError, upstreamUnavailable } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { RELAY_FROM_HEADER } from '../sources/relay-source.js';
import type { RelayTarget } from '../live/live-session.js';
import { md5, type StreamDefinition } from '../stream-definition.js';
import type { StreamEngine, ViewerIdentity } from '../stream-engine.js';
import { HlsSession, type HlsOwnedPart } from './hls-session.js';
import { HlsTranscodeOutput } from './hls-transcode-output.js';
import { FILES_ROUTE, fileFromOwner, ManagedOutputs, SAFE_NAME } from './managed-output.js';
import { askOwner, readBody } from './owner-request.js';
import { rewritePlaylist } from './playlist-rewrite.js';
import { SharedFetcher, type FetchedPlaylist } from './shared-fetcher.js';
import { HlsTsSource } from './hls-ts-source.js';
import type { Channel } from '../live/channel.js';
import { openUpstream, tlsVerifyFor } from '../sources/upstream.js';

/** How the HTTP layer writes proxy URIs into playlists (signed, with ROOT_PATH and client_id). */
export interface HlsLinks {
  /** A variant or rendition playlist at `target` (an absolute upstream URL). */
  playlist(target: string): string;
  /** A segment, key, map or part: `target` is an absolute upstream URL or `seg:<name>`. */
  resource(target: string): string;
}

export interface HlsEngineDeps {
  config: Config;
  coordinator: Coordinator;
  logger: Logger;
  workerId: string;
  engine: StreamEngine;
  relaySecret: () => Promise<string>;
  resolveRelay: (holderToken: string) => Promise<RelayTarget | null>;
  onSourcesChanged?: () => void;
}

const PLAYLIST_NAME = 'index.m3u8';
const FFMPEG_KILL_AFTER_MS = 3000;
const PLAYLIST_HEAD = {
  'Content-Type': 'application/vnd.apple.mpegurl',
  'Cache-Control': 'no-cache, no-store, must-revalidate',
};

export class HlsEngine {
  readonly outputs: ManagedOutputs;
  private readonly sessions = new Map<string, HlsSession>();
  private readonly unsubscribe: () => void;

  constructor(private readonly deps: HlsEngineDeps) {
    const { config, logger } = deps;
    this.outputs = new ManagedOutputs({
      root: config.hlsTempDir,
      logger,
      gc: { enabled: config.hlsGcEnabled, intervalMs: config.hlsGcIntervalMs, ageMs: config.hlsGcAgeMs },
    });
    // A deletion on any worker stops the stream's HLS sessions wherever they run.
    this.unsubscribe = deps.coordinator.subscribe((e) => {
      if (e.type === 'stream_deleted' && e.streamId) this.stopStream(e.streamId);
    });
  }

  /** Sessions of a stream on this worker. */
  sessionsOf(id: string): HlsSession[] {
    return [...this.sessions.values()].filter((s) => s.id === id);
  }

  /** Stops a stream's HLS sessions on this worker (deleted stream). */
  stopStream(id: string): boolean {
    const list = this.sessionsOf(id);
    for (const s of list) void s.stop();
    return list.length > 0;
  }

  /**
   * The playlist of a transcode with HLS output: the owner's FFmpeg playlist (waiting up to
   * HLS_WAIT_TIME for the first one), segment names rewritten to signed proxy URIs.
   */
  async transcodePlaylist(def: StreamDefinition, clientId: string, who: ViewerIdentity, links: HlsLinks, res: ServerResponse, extra: Record<string, string>): Promise<void> {
    const session = await this.viewerSession(def, clientId, who);
    const body = await session.hold(() => this.readManaged(session, PLAYLIST_NAME, this.deps.config.hlsWaitTimeMs));
    if (!body) {
      throw upstreamUnavailable(`The transcode wrote no playlist within ${this.deps.config.hlsWaitTimeMs / 1000} s`);
    }
    const text = rewritePlaylist(body.toString('utf8'), (uri) => (SAFE_NAME.test(uri) ? links.resource(`seg:${uri}`) : uri));
    res.writeHead(200, { ...PLAYLIST_HEAD, ...extra });
    res.end(text);
  }

  /** A file of a transcode's HLS output, by name (the caller checked the signature). */
  async transcodeFile(def: StreamDefinition, clientId: string, who: ViewerIdentity, name: string, res: ServerResponse, extra: Record<string, string>): Promise<void> {
    if (!SAFE_NAME.test(name)) throw new AppError(404, 'NOT_FOUND', 'No such HLS file');
    const session = await this.viewerSession(def, clientId, who);
    await session.hold(async () => {
      for (let tries = 0; tries < 3; tries++) {
        const route = await session.route();
        if (route.owned) {
          await this.outputs.serve(session.key, name, res, 0);
          return this.countServed(def.id, clientId, res);
        }
        const ans = await fileFromOwner({ ...(await this.ownerOf(route.relay)), key: session.key, name, timeoutMs: this.deps.config.connectionTimeoutMs });
        if (ans === 'not_owner' || ans === 'invalid') {
          session.ownerGone();
          continue;
        }
        const status = ans.statusCode ?? 502;
        const headers = passedHeaders(ans);
        res.writeHead(status, status < 300 ? { ...headers, ...extra } : headers);
        const n = await writeBody(res, ans);
        if (status === 200) this.deps.engine.countHlsBytes(def.id, clientId, n, 1);
        return;
      }
      throw upstreamUnavailable('The owner of this HLS transcode could not be reached');
    });
  }

  /**
   * A proxied playlist: the stream's own (`target` null) or a variant the proxy signed, fetched
   * by the owner (cached for half its target duration), every URI rewritten by `links`.
   */
  async proxyPlaylist(def: StreamDefinition, clientId: string, who: ViewerIdentity, target: string | null, links: HlsLinks, res: ServerResponse, extra: Record<string, string>): Promise<void> {
    const session = await this.viewerSession(def, clientId, who);
    const fetched = await session.hold(() => this.playlistVia(session, target ?? def.url));
    const text = fetched.body.toString('utf8');
    if (fetched.status !== 200) throw upstreamUnavailable(`The upstream playlist answered HTTP ${fetched.status}`);
    if (!text.trimStart().startsWith('#EXTM3U')) throw upstreamUnavailable('The upstream answer is not an HLS playlist');
    const out = rewritePlaylist(text, (uri, kind) => {
      const abs = absoluteHttp(uri, fetched.finalUrl);
      if (!abs) return uri; // data:, skd:// and the like are not fetched by anyone here
      return kind === 'playlist' ? links.playlist(abs) : links.resource(abs);
    });
    res.writeHead(200, { ...PLAYLIST_HEAD, ...extra });
    res.end(out);
  }

  /** A proxied segment, key, map or part: one origin request for every viewer in the cluster. */
  async proxyResource(def: StreamDefinition, clientId: string, who: ViewerIdentity, url: string, range: string | undefined, res: ServerResponse, extra: Record<string, string>): Promise<void> {
    const session = await this.viewerSession(def, clientId, who);
    await session.hold(async () => {
      const opened = await this.resourceVia(session, url, range);
      res.writeHead(opened.status, opened.status < 300 ? { ...opened.headers, ...extra } : opened.headers);
      const n = await writeBody(res, opened.body);
      if (opened.status < 300) this.deps.engine.countHlsBytes(def.id, clientId, n, 1);
    });
  }

  /**
   * The playlist at `url` for a reader that is not a viewer (an HLS source played as TS on
   * /stream/{id}); `reader` names it for the session's interest.
   */
  async playlistFor(def: StreamDefinition, reader: string, url: string): Promise<FetchedPlaylist> {
    const session = this.sessionFor(def, reader);
    return session.hold(() => this.playlistVia(session, url));
  }

  /** A segment for a reader that is not a viewer (see playlistFor). */
  async resourceFor(def: StreamDefinition, reader: string, url: string): Promise<OpenedResource> {
    const session = this.sessionFor(def, reader);
    return session.hold(() => this.resourceVia(session, url));
  }

  /**
   * The relay listener's HLS routes (the caller checked the relay secret): `GET
   * /files/{key}/{name}`. False when the path is not one of them.
   */
  async handleRelay(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    if (FETCH_ROUTE.test(req.url ?? '')) return this.serveFetch(req, res);
    const m = FILES_ROUTE.exec(req.url ?? '');
    if (!m) return false;
    const key = m[1]!;
    const name = decodeURIComponent(m[2]!);
    const session = this.sessions.get(key);
    if (!session?.isOwner || !this.outputs.get(key)) {
      res.writeHead(409, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ detail: 'Not the owner', code: 'NOT_OWNER' }));
      return true;
    }
    session.touchRemote(String(req.headers[RELAY_FROM_HEADER] ?? 'unknown'));
    await session.hold(() => this.outputs.serve(key, name, res, name.endsWith('.m3u8') ? this.deps.config.hlsWaitTimeMs : 0));
    return true;
  }

  /** An HLS source read as one MPEG-TS (for /stream/{id}); fetches go through the owner. */
  tsSource(def: StreamDefinition, channel: Channel): HlsTsSource {
    const { config, logger, workerId } = this.deps;
    const reader = `ts:${workerId}`;
    return new HlsTsSource({
      def, channel, logger, reader,
      playlist: (url) => this.playlistFor(def, reader, url),
      resource: (url) => this.resourceFor(def, reader, url),
      retryAttempts: config.streamRetryAttempts,
      retryDelayMs: config.streamRetryDelayMs,
    });
  }

  /** Whether the stream's URL answers a playlist (its bytes start `#EXTM3U`; labels are not trusted); one GET, cut short. */
  async probePlaylist(def: StreamDefinition): Promise<boolean> {
    const { config } = this.deps;
    const ac = new AbortController();
    try {
      const { res } = await openUpstream({
        url: def.url, signal: ac.signal, timeoutMs: config.connectionTimeoutMs, tlsVerify: tlsVerifyFor(def),
        headers: { 'User-Agent': def.userAgent ?? config.defaultUserAgent, ...def.headers },
      });
      for await (const chunk of res as AsyncIterable<Buffer>) return chunk.subarray(0, 32).toString('latin1').trimStart().startsWith('#EXTM3U');
      return false;
    } catch {
      return false;
    } finally {
      ac.abort();
    }
  }

  /** Every HLS session of this worker (metrics read their viewers at scrape time). */
  allSessions(): IterableIterator<HlsSession> {
    return this.sessions.values();
  }

  /**
   * Removes an HLS viewer (API.md §3.5): forgotten by this worker's sessions and its record
   * deleted wherever it was written; false when the stream has no such viewer. A player that
   * keeps polling comes back as a new viewer.
   */
  async removeViewer(streamId: string, clientId: string): Promise<boolean> {
    let found = false;
    for (const s of this.sessionsOf(streamId)) found = s.forget(clientId) || found;
    await this.deps.engine.untrackHlsClient(streamId, clientId);
    const record = (await this.deps.coordinator.listClients(streamId)).find((c) => c.clientId === clientId);
    if (record) await this.deps.coordinator.deleteClient(streamId, clientId);
    return found || record !== undefined;
  }

  /** Who owns what here, for /stats/pooled and the heartbeat. */
  ownedSessions(): HlsSession[] {
    return [...this.sessions.values()].filter((s) => s.isOwner);
  }

  async close(): Promise<void> {
    this.unsubscribe();
    // Every owner part's FFmpeg has exited and its lease is free before the outputs go.
    await Promise.all([...this.sessions.values()].map((s) => s.stop()));
    await this.outputs.close();
  }

  /** `GET /fetch/{key}?kind=playlist|resource&url=…` from another worker (owner side). */
  private async serveFetch(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const u = new URL(req.url ?? '/', 'http://relay');
    const key = FETCH_ROUTE.exec(u.pathname)?.[1] ?? '';
    const url = u.searchParams.get('url') ?? '';
    const session = this.sessions.get(key);
    const fetcher = session?.ownedPart;
    if (!session || !(fetcher instanceof SharedFetcher)) {
      res.writeHead(409, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ detail: 'Not the owner', code: 'NOT_OWNER' }));
      return true;
    }
    session.touchRemote(String(req.headers[RELAY_FROM_HEADER] ?? 'unknown'));
    await session.hold(async () => {
      try {
        if (u.searchParams.get('kind') === 'playlist') {
          const p = await fetcher.playlist(url);
          res.writeHead(200, { 'Content-Type': 'application/vnd.apple.mpegurl', [UPSTREAM_STATUS]: String(p.status), [FINAL_URL]: encodeURIComponent(p.finalUrl) });
          return void res.end(p.body);
        }
        const range = typeof req.headers.range === 'string' ? req.headers.range : undefined;
        const flight = fetcher.resource(url, range);
        await flight.head();
        res.writeHead(flight.status, flight.headers);
        await writeBody(res, flight.read());
      } catch (err) {
        if (res.headersSent) return void res.destroy();
        res.writeHead(502, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(upstreamUnavailable(upstreamDetail(err)).toJSON()));
      }
    });
    return true;
  }

  /** A playlist from this worker's fetcher (as owner) or from the owner's. */
  private async playlistVia(session: HlsSession, url: string): Promise<FetchedPlaylist> {
    for (let tries = 0; tries < 3; tries++) {
      const route = await session.route();
      if (route.owned) {
        return (route.owned as SharedFetcher).playlist(url).catch((err: unknown) => {
          throw upstreamUnavailable(upstreamDetail(err));
        });
      }
      const ans = await askOwner({ ...(await this.ownerOf(route.relay)), path: this.fetchPath(session.key, 'playlist', url), timeoutMs: this.ownerTimeoutMs });
      if (ans === 'not_owner') {
        session.ownerGone();
        continue;
      }
      if (ans.statusCode !== 200) throw upstreamUnavailable(await errorDetail(ans));
      return {
        body: await readBody(ans),
        status: Number(ans.headers[UPSTREAM_STATUS] ?? 502),
        finalUrl: decodeURIComponent(String(ans.headers[FINAL_URL] ?? encodeURIComponent(url))),
      };
    }
    throw upstreamUnavailable('The owner of this HLS stream could not be reached');
  }

  /** A resource from this worker's fetcher (as owner) or from the owner's. */
  private async resourceVia(session: HlsSession, url: string, range?: string): Promise<OpenedResource> {
    for (let tries = 0; tries < 3; tries++) {
      const route = await session.route();
      if (route.owned) {
        const flight = (route.owned as SharedFetcher).resource(url, range);
        await flight.head().catch((err: unknown) => {
          throw upstreamUnavailable(upstreamDetail(err));
        });
        return { status: flight.status, headers: flight.headers, body: flight.read() };
      }
      const ans = await askOwner({
        ...(await this.ownerOf(route.relay)), path: this.fetchPath(session.key, 'resource', url),
        timeoutMs: this.ownerTimeoutMs, headers: range ? { range } : {},
      });
      if (ans === 'not_owner') {
        session.ownerGone();
        continue;
      }
      if (ans.statusCode === 502) throw upstreamUnavailable(await errorDetail(ans));
      return { status: ans.statusCode ?? 502, headers: passedHeaders(ans), body: ans };
    }
    throw upstreamUnavailable('The owner of this HLS stream could not be reached');
  }

  private fetchPath(key: string, kind: 'playlist' | 'resource', url: string): string {
    return `/fetch/${key}?${new URLSearchParams({ kind, url }).toString()}`;
  }

  private get ownerTimeoutMs(): number {
    return this.deps.config.connectionTimeoutMs * 2;
  }

  private async readManaged(session: HlsSession, name: string, waitMs: number): Promise<Buffer | null> {
    for (let tries = 0; tries < 3; tries++) {
      const route = await session.route();
      if (route.owned) {
        const body = await this.outputs.read(session.key, name, waitMs);
        return body === 'not_here' ? null : body;
      }
      const ans = await fileFromOwner({
        ...(await this.ownerOf(route.relay)), key: session.key, name,
        timeoutMs: waitMs + this.deps.config.connectionTimeoutMs,
      });
      if (ans === 'not_owner' || ans === 'invalid') {
        session.ownerGone();
        continue;
      }
      if (ans.statusCode !== 200) {
        ans.resume();
        return null;
      }
      return readBody(ans);
    }
    return null;
  }

  private async ownerOf(target: RelayTarget): Promise<{ address: string; secret: string; from: string }> {
    return { address: target.address, secret: await this.deps.relaySecret(), from: this.deps.workerId };
  }

  private countServed(streamId: string, clientId: string, res: ServerResponse): void {
    const n = Number(res.getHeader('content-length') ?? 0);
    if (res.statusCode === 200) this.deps.engine.countHlsBytes(streamId, clientId, n, 1);
  }

  /** The session of a viewer (its poll counts), creating it on this worker when needed. */
  private async viewerSession(def: StreamDefinition, clientId: string, who: ViewerIdentity): Promise<HlsSession> {
    const session = this.sessionOf(def, this.keyOf(def, clientId));
    if (session.touch(clientId)) await this.deps.engine.trackHlsClient(def, clientId, who);
    return session;
  }

  /** The session of a reader that is not a viewer (no client record; it counts as interest). */
  private sessionFor(def: StreamDefinition, reader: string): HlsSession {
    const session = this.sessionOf(def, this.keyOf(def, reader));
    session.touchRemote(reader);
    return session;
  }

  private sessionOf(def: StreamDefinition, key: string): HlsSession {
    let session = this.sessions.get(key);
    if (!session || session.isClosed) {
      session = this.createSession(def, key);
      this.sessions.set(key, session);
    }
    return session;
  }

  /** HLS transcodes share one FFmpeg per pool key (slot 1), or one per viewer without pooling. */
  private keyOf(def: StreamDefinition, clientId: string): string {
    const { transcodingPooling, sharingStrategy } = this.deps.config;
    if (!def.transcode) return `h${def.id}:1`;
    if (!transcodingPooling || sharingStrategy === 'disabled') return `v${md5(`${def.id}|${clientId}`).slice(0, 24)}:1`;
    return `${this.deps.engine.poolKeyOf(def)}:1`;
  }

  private createSession(def: StreamDefinition, key: string): HlsSession {
    const { config, coordinator, logger, workerId, engine } = this.deps;
    const individual = key.startsWith('v');
    return new HlsSession<HlsOwnedPart>({
      id: def.id, key, coordinator, logger, workerId,
      leaseTtlMs: config.leaseTtlMs,
      graceMs: individual ? 0 : config.sharedStreamGraceMs,
      clientTimeoutMs: config.clientTimeoutMs,
      startOwned: (fail) => this.startOwned(def, key, fail),
      resolveRelay: this.deps.resolveRelay,
      onViewerEnd: (clientId) => void engine.untrackHlsClient(def.id, clientId),
      onClosed: (s) => {
        if (this.sessions.get(s.key) === s) this.sessions.delete(s.key);
      },
      onOwnership: this.deps.onSourcesChanged,
    });
  }

  private startOwned(def: StreamDefinition, key: string, fail: (err: Error) => void): Promise<HlsOwnedPart> {
    const { config, logger, engine } = this.deps;
    if (!def.transcode) {
      return Promise.resolve(new SharedFetcher({ def, logger, defaultUserAgent: config.defaultUserAgent, connectTimeoutMs: config.connectionTimeoutMs }));
    }
    return HlsTranscodeOutput.start({
      outputs: this.outputs, root: config.hlsTempDir, key, streamId: def.id,
      argv: engine.ffmpegArgv(def), ffmpegPath: config.ffmpegPath, logger,
      killAfterMs: FFMPEG_KILL_AFTER_MS,
      onPid: (pid, running) => engine.trackPid(pid, running),
      fail,
    });
  }
}

/** A resource being served: status and headers known, the body as it arrives. */
export interface OpenedResource {
  status: number;
  headers: Record<string, string>;
  body: AsyncIterable<Buffer>;
}

const FETCH_ROUTE = /^\/fetch\/([A-Za-z0-9_:.-]{1,256})(?:\?|$)/;
const UPSTREAM_STATUS = 'x-upstream-status';
const FINAL_URL = 'x-final-url';
const PASSED_HEADERS = ['content-type', 'content-length', 'content-range', 'accept-ranges', 'last-modified'] as const;

/** The headers of an owner's answer a player gets too. */
function passedHeaders(ans: IncomingMessage): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const h of PASSED_HEADERS) if (ans.headers[h] !== undefined) headers[h] = String(ans.headers[h]);
  return headers;
}

/** An absolute http(s) URL for `uri` against `base`, or null (data:, skd:// and the like). */
function absoluteHttp(uri: string, base: string): string | null {
  try {
    const u = new URL(uri, base);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.toString() : null;
  } catch {
    return null;
  }
}

function upstreamDetail(err: unknown): string {
  return `Upstream unavailable: ${err instanceof Error ? err.message : String(err)}`;
}

async function errorDetail(ans: IncomingMessage): Promise<string> {
  try {
    return String((JSON.parse((await readBody(ans, 65536)).toString('utf8')) as { detail?: unknown }).detail ?? 'the owner could not fetch it');
  } catch {
    return 'the owner could not fetch it';
  }
}

/** Writes a body with backpressure from this reader only; resolves with the bytes written. */
export async function writeBody(res: ServerResponse, body: AsyncIterable<Buffer>): Promise<number> {
  let n = 0;
  try {
    for await (const chunk of body) {
      if (res.destroyed) break;
      n += chunk.length;
      if (!res.write(chunk)) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            res.off('drain', done);
            res.off('close', done);
            resolve();
          };
          res.on('drain', done);
          res.on('close', done);
        });
      }
    }
    res.end();
  } catch {
    res.destroy();
  }
  return n;
}
