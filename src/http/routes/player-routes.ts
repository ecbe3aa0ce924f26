// Player routes (API.md §4.1): public for existing ids; `?url=` creates a stream on the fly
// only for a token holder or a signed URI, so the proxy is never an open proxy.
import { performance } from 'node:perf_hooks';
import { Router, type Request, type Response } from 'express';
import type { HlsEngine } from '../../streams/hls/hls-engine.js';
import { AppError, streamNotFound, validationError } from '../../errors.js';
import type { StreamEngine, ViewerIdentity } from '../../streams/stream-engine.js';
import { MoveToOwner } from '../../streams/live/live-session.js';
import { clientIdFor } from '../../streams/client-identity.js';
import { isVodPath, streamIdForUrl, type StreamDefinition } from '../../streams/stream-definition.js';
import type { StreamService } from '../../streams/stream-service.js';
import { authError, tokenState } from '../auth.js';
import { clientIp } from '../client-ip.js';
import { streamIdParam } from '../request-values.js';
import { queryString, urlProblem } from '../schemas.js';
import type { SocketHandoff } from '../socket-handoff.js';
import type { UrlSigner } from '../url-signer.js';

export interface PlayerRoutesDeps {
  service: StreamService;
  engine: StreamEngine;
  signer: () => Promise<UrlSigner>;
  apiToken: string | undefined;
  rootPath: string;
  hls: HlsEngine;
  /** Moves live viewers to the worker of this host that owns their source (cluster only). */
  handoff?: SocketHandoff;
}

export function playerRoutes(deps: PlayerRoutesDeps): Router {
  const r = Router();
  const play = async (req: Request, res: Response): Promise<void> => {
    const requestedAt = performance.now(); // time to first byte counts from here
    let def = await resolveStream(req, deps);
    const who = viewerIdentity(req);
    if (def.kind === 'hls' && isVodPath(def.url)) {
      // A .m3u8 episode or film (upstream m3u-proxy 0.4.30): the HLS route when it really is a
      // playlist, keeping who asks; anything else plays as plain VOD.
      if (await deps.hls.probePlaylist(def)) {
        const keep = new URLSearchParams();
        for (const k of ['username', 'client_id']) {
          const v = queryString(req.query, k);
          if (v !== undefined) keep.set(k, v);
        }
        const q = keep.toString();
        return res.redirect(302, `${deps.rootPath}/hls/${def.id}/playlist.m3u8${q ? `?${q}` : ''}`);
      }
      def = { ...def, kind: 'vod' };
    }
    if (def.transcode?.outputFormat === 'hls') {
      // Its output is a playlist, not a byte stream: send the player there.
      const q = new URLSearchParams(req.query as Record<string, string>).toString();
      return res.redirect(302, `${deps.rootPath}/hls/${def.id}/playlist.m3u8${q ? `?${q}` : ''}`);
    }
    if (def.kind !== 'vod' && req.method === 'HEAD') {
      // Answered at once: no upstream, no client record.
      return deps.engine.headLive(res, { 'X-Stream-ID': def.id, 'X-Client-ID': clientIdFor({ ...who, streamId: def.id }, () => false) });
    }
    if (await movedToOwner(req, res, def, deps)) return;
    deps.engine.admit();
    const clientId = await deps.engine.claimClient(def, who);
    const extra = { 'X-Stream-ID': def.id, 'X-Client-ID': clientId };
    let owner: string | null = null;
    try {
      if (def.kind === 'vod') return await deps.engine.playVod(def, clientId, who, req, res, extra);
      return await deps.engine.playLive(def, clientId, who, res, extra, requestedAt, deps.handoff?.mayMove(req) ?? false);
    } catch (err) {
      if (!(err instanceof MoveToOwner)) throw err;
      owner = err.workerId;
    } finally {
      await deps.engine.releaseClient(def.id, clientId);
    }
    // Another worker won the race for the source (players open two connections at once) and
    // has room: the player goes there, its claim released first.
    if (deps.handoff!.moveTo(req, owner)) {
      res.locals.handedOff = true;
      return;
    }
    // It could not be sent: played here after all (relayed), and never moved again.
    if (req.socket.destroyed) return;
    deps.handoff!.settle(req.socket);
    return play(req, res);
  };
  r.head('/stream/:id', play);
  r.get('/stream/:id', play);
  return r;
}

/**
 * Hands a live GET to the worker of this host that owns the stream's source, when that saves a
 * relay and the owner has room (socket-handoff.ts); true when it went (nothing is answered here).
 */
async function movedToOwner(req: Request, res: Response, def: StreamDefinition, deps: PlayerRoutesDeps): Promise<boolean> {
  const { handoff, engine } = deps;
  if (!handoff?.mayMove(req)) return false;
  // Nobody can say who owns it: played here, as without the hand-off.
  const owner = await engine.moveTarget(def).catch(() => null);
  if (!owner || !handoff.moveTo(req, owner)) return false;
  // The owner answers and counts the request.
  res.locals.handedOff = true;
  return true;
}

export async function resolveStream(req: Request, deps: PlayerRoutesDeps): Promise<StreamDefinition> {
  // client_id, username and the like were checked by validateRequestValues (request-values.ts).
  const id = streamIdParam(req);
  // A stream already playing on this worker: no coordinator round trip before its first byte.
  const known = deps.engine.warmDefinition(id) ?? (await deps.service.find(id));
  if (known) return known;
  const url = queryString(req.query, 'url');
  if (url === undefined) throw streamNotFound(id);

  // Creating on the fly: a token holder, or a URI this cluster signed.
  const state = tokenState(req, deps.apiToken);
  if (state !== 'off' && state !== 'valid') {
    const exp = queryString(req.query, 'exp');
    const sig = queryString(req.query, 'sig');
    if (sig === undefined) throw authError(state)!;
    if (!(await deps.signer()).verify(id, url, exp, sig)) {
      throw new AppError(403, 'SIGNATURE_INVALID', 'The signature of this URI is wrong or expired');
    }
  }
  const problem = urlProblem(url);
  if (problem) throw validationError(`url: ${problem}`, [{ field: 'url', message: problem }]);
  if (streamIdForUrl(url) !== id) {
    throw validationError('url: does not match the stream id (md5 of the url)', [
      { field: 'url', message: 'does not match the stream id' },
    ]);
  }
  return deps.service.upsert({
    url, failoverUrls: [], failoverResolverUrl: null, userAgent: null, headers: {}, metadata: {},
    strictLiveTs: null, useStickySession: null, options: {},
  });
}

export function viewerIdentity(req: Request): ViewerIdentity {
  const q = req.query;
  const username = queryString(q, 'username') ?? queryString(q, 'user') ?? queryString(q, 'u') ?? req.get('x-username') ?? null;
  return {
    clientId: queryString(q, 'client_id'),
    ip: clientIp(req),
    userAgent: req.get('user-agent') ?? '',
    username,
  };
}
