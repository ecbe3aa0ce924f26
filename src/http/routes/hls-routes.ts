// HLS player routes (API.md §4.2): playlists with every URI rewritten to signed proxy URIs,
// and the resources they name. Public for existing ids; a `url=` or `seg=` target is served
// only with a valid signature over it (or, for `url=`, the API token when one is configured),
// so the proxy never fetches a URL nobody signed and never opens a path a client named.
import { Router, type Request, type Response } from 'express';
import { AppError, streamNotFound, validationError } from '../../errors.js';
import type { HlsEngine, HlsLinks } from '../../streams/hls/hls-engine.js';
import type { StreamDefinition } from '../../streams/stream-definition.js';
import type { StreamEngine } from '../../streams/stream-engine.js';
import { clientIdFor } from '../../streams/client-identity.js';
import { requireToken, tokenState } from '../auth.js';
import { CLIENT_ID, streamIdParam } from '../request-values.js';
import { queryString } from '../schemas.js';
import type { UrlSigner } from '../url-signer.js';
import { resolveStream, viewerIdentity, type PlayerRoutesDeps } from './player-routes.js';

export interface HlsRoutesDeps extends PlayerRoutesDeps {
  hls: HlsEngine;
  engine: StreamEngine;
  rootPath: string;
}

/** `segment.m4s` / `segment.mp4` for fMP4/CMAF resources (as upstream m3u-proxy names them), else `segment.ts`. */
export function segmentRouteFor(target: string): string {
  let p = target;
  try {
    p = new URL(target).pathname;
  } catch {
    /* seg:<name> */
  }
  const ext = /\.(m4s|mp4|cmfv|cmfa|m4a)$/i.exec(p)?.[1]?.toLowerCase();
  return ext === 'm4s' ? 'segment.m4s' : ext ? 'segment.mp4' : 'segment.ts';
}

export function hlsRoutes(deps: HlsRoutesDeps): Router {
  const r = Router();

  const linksFor = async (def: StreamDefinition, clientId: string): Promise<HlsLinks> => {
    const signer = await deps.signer();
    const base = `${deps.rootPath}/hls/${def.id}`;
    const signed = (route: string, param: 'url' | 'seg', target: string, value: string): string => {
      const { exp, sig } = signer.sign(def.id, target);
      const q = new URLSearchParams({ [param]: value, client_id: clientId, exp: String(exp), sig });
      return `${base}/${route}?${q.toString()}`;
    };
    return {
      playlist: (target) => signed('playlist.m3u8', 'url', target, target),
      resource: (target) => target.startsWith('seg:')
        ? signed(segmentRouteFor(target.slice(4)), 'seg', target, target.slice(4))
        : signed(segmentRouteFor(target), 'url', target, target),
    };
  };

  /** The target a request names (checked), or null when it names none (the stream's own playlist). */
  const target = async (req: Request, def: StreamDefinition, signer: UrlSigner): Promise<{ url?: string; seg?: string } | null> => {
    const url = queryString(req.query, 'url');
    const seg = queryString(req.query, 'seg');
    if (url === undefined && seg === undefined) return null;
    const signedOver = url ?? `seg:${seg}`;
    const exp = queryString(req.query, 'exp');
    const sig = queryString(req.query, 'sig');
    if (sig !== undefined || seg !== undefined || tokenState(req, deps.apiToken) !== 'valid') {
      if (!signer.verify(def.id, signedOver, exp, sig)) {
        throw new AppError(403, 'SIGNATURE_INVALID', 'The signature of this URI is wrong or expired');
      }
    }
    return url !== undefined ? { url } : { seg: seg! };
  };

  const identify = (req: Request, def: StreamDefinition): { clientId: string; who: ReturnType<typeof viewerIdentity> } => {
    const who = viewerIdentity(req);
    return { clientId: clientIdFor({ ...who, streamId: def.id }, () => false), who };
  };

  /** An unknown id is 404 before anything else (API.md §4.2); a known one never creates. */
  const known = async (req: Request): Promise<StreamDefinition> => {
    const id = streamIdParam(req);
    if (!(await deps.service.find(id))) throw streamNotFound(id);
    return resolveStream(req, deps);
  };

  const isHlsTranscode = (def: StreamDefinition): boolean => def.kind === 'transcode' && def.transcode?.outputFormat === 'hls';

  r.get('/hls/:id/playlist.m3u8', async (req: Request, res: Response) => {
    const def = await known(req);
    const t = await target(req, def, await deps.signer());
    const { clientId, who } = identify(req, def);
    const extra = { 'X-Stream-ID': def.id, 'X-Client-ID': clientId };
    if (isHlsTranscode(def) && !t) {
      return deps.hls.transcodePlaylist(def, clientId, who, await linksFor(def, clientId), res, extra);
    }
    if (def.kind === 'hls' && t?.seg === undefined) {
      return deps.hls.proxyPlaylist(def, clientId, who, t?.url ?? null, await linksFor(def, clientId), res, extra);
    }
    throw new AppError(409, 'WRONG_STREAM_TYPE', `Stream ${def.id} has no HLS form`);
  });

  const resource = async (req: Request, res: Response): Promise<void> => {
    const def = await known(req);
    const t = await target(req, def, await deps.signer());
    if (!t) throw new AppError(422, 'VALIDATION_ERROR', 'url or seg is required', [{ field: 'url', message: 'is required' }]);
    const { clientId, who } = identify(req, def);
    const extra = { 'X-Stream-ID': def.id, 'X-Client-ID': clientId };
    if (t.seg !== undefined && isHlsTranscode(def)) return deps.hls.transcodeFile(def, clientId, who, t.seg, res, extra);
    if (t.url !== undefined && def.kind === 'hls') {
      return deps.hls.proxyResource(def, clientId, who, t.url, req.get('range'), res, extra);
    }
    throw new AppError(409, 'WRONG_STREAM_TYPE', `Stream ${def.id} has no HLS form`);
  };
  for (const route of ['segment', 'segment.ts', 'segment.m4s', 'segment.mp4']) r.get(`/hls/:id/${route}`, resource);

  // Management (API.md §3.5): the token is needed like on every management route.
  r.delete('/hls/:id/clients/:client_id', requireToken(deps.apiToken), async (req: Request, res: Response) => {
    const def = await known(req);
    const clientId = String(req.params.client_id);
    if (!CLIENT_ID.re.test(clientId)) throw validationError(`client_id: ${CLIENT_ID.message}`, [{ field: 'client_id', message: CLIENT_ID.message }]);
    if (!(await deps.hls.removeViewer(def.id, clientId))) {
      throw new AppError(404, 'CLIENT_NOT_FOUND', `Client ${clientId} not found on stream ${def.id}`);
    }
    res.json({ message: `Client ${clientId} removed from stream ${def.id}` });
  });
  return r;
}
