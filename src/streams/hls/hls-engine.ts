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
import { md5, sha256, type StreamDefinition } from '../stream-definition.js';
import type { StreamEngine, ViewerIdentity } from '../stream-engine.js';
import { HlsSession, type HlsOwnedPart } from './hls-session.js';
import { HlsTranscodeOutput } from './hls-transcode-output.js';
import { FILES_ROUTE, fileFromOwner, ManagedOutputs, SAFE_NAME } from './managed-output.js';
import { readBody } from './owner-request.js';
import { rewritePlaylist } from './playlist-rewrite.js';

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
    for (const s of list) s.stop();
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
        await pipeAnswer(ans, res, extra);
        return this.countServed(def.id, clientId, res);
      }
      throw upstreamUnavailable('The owner of this HLS transcode could not be reached');
    });
  }

  /**
   * The relay listener's HLS routes (the caller checked the relay secret): `GET
   * /files/{key}/{name}`. False when the path is not one of them.
   */
  async handleRelay(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
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

  /** Who owns what here, for /stats/pooled and the heartbeat. */
  ownedSessions(): HlsSession[] {
    return [...this.sessions.values()].filter((s) => s.isOwner);
  }

  async close(): Promise<void> {
    this.unsubscribe();
    for (const s of [...this.sessions.values()]) s.stop();
    await this.outputs.close();
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
    const key = this.keyOf(def, clientId);
    let session = this.sessions.get(key);
    if (!session || session.isClosed) {
      session = this.createSession(def, key);
      this.sessions.set(key, session);
    }
    if (session.touch(clientId)) await this.deps.engine.trackHlsClient(def, clientId, who);
    return session;
  }

  /** HLS transcodes share one FFmpeg per pool key (slot 1), or one per viewer without pooling. */
  private keyOf(def: StreamDefinition, clientId: string): string {
    const { transcodingPooling, sharingStrategy } = this.deps.config;
    if (!def.transcode) return `h${def.id}:1`;
    if (!transcodingPooling || sharingStrategy === 'disabled') return `v${md5(`${def.id}|${clientId}`).slice(0, 24)}:1`;
    return sharingStrategy === 'url_only' ? `u${md5(def.url)}:1` : `p${sha256(def.transcode.argv.join('\0')).slice(0, 32)}:1`;
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
    if (!def.transcode) throw new AppError(409, 'WRONG_STREAM_TYPE', 'This stream has no HLS form');
    return HlsTranscodeOutput.start({
      outputs: this.outputs, root: config.hlsTempDir, key, streamId: def.id,
      argv: def.transcode.argv, ffmpegPath: config.ffmpegPath, logger,
      killAfterMs: FFMPEG_KILL_AFTER_MS,
      onPid: (pid, running) => engine.trackPid(pid, running),
      fail,
    });
  }
}

/** Passes an owner's answer (status, type, length, body) on to the player. */
export async function pipeAnswer(ans: IncomingMessage, res: ServerResponse, extra: Record<string, string>): Promise<void> {
  const status = ans.statusCode ?? 502;
  const headers: Record<string, string> = {};
  for (const h of ['content-type', 'content-length', 'content-range', 'accept-ranges'] as const) {
    const v = ans.headers[h];
    if (v !== undefined) headers[h] = String(v);
  }
  res.writeHead(status, status < 300 ? { ...headers, ...extra } : headers);
  await new Promise<void>((resolve) => {
    ans.pipe(res);
    ans.once('end', resolve);
    ans.once('error', () => {
      res.destroy();
      resolve();
    });
    res.once('close', () => {
      ans.destroy();
      resolve();
    });
  });
}
