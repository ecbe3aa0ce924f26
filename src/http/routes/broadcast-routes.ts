// `/broadcast/*` (BROADCAST.md §2): m3u-editor's Networks. Start, stop, status, list and
// delete need the API token; the playlist and segments are public (players fetch them
// through the editor's 302 with no token). Errors are `{detail, code}` with a sentence
// `detail`, which the editor embeds in its own messages (§7.16).
import { Router, type NextFunction, type Request, type Response } from 'express';
import { AppError } from '../../errors.js';
import type { BroadcastFile, BroadcastService } from '../../streams/broadcast/broadcast-service.js';
import { NETWORK_ID_RE, startBroadcastSchema } from '../../streams/broadcast/broadcast-schema.js';
import { requireToken } from '../auth.js';
import { parseBody } from '../schemas.js';

export interface BroadcastRoutesDeps {
  broadcasts: BroadcastService;
  apiToken: string | undefined;
}

const PLAYLIST_HEADERS = {
  'Content-Type': 'application/vnd.apple.mpegurl',
  'Cache-Control': 'no-cache, no-store, must-revalidate',
  Pragma: 'no-cache',
  Expires: '0',
  'Access-Control-Allow-Origin': '*',
};

/** `network_id` names a directory, so it is checked before anything else (§7.9). */
function networkId(req: Request): string {
  const id = String(req.params.id ?? '');
  if (!NETWORK_ID_RE.test(id)) {
    throw new AppError(422, 'VALIDATION_ERROR', 'network_id may only contain letters, digits, _ and - (at most 64)', [
      { field: 'network_id', message: 'must match [A-Za-z0-9_-]{1,64}' },
    ]);
  }
  return id;
}

function sendFile(res: Response, file: BroadcastFile): void {
  res.status(200).set({
    'Content-Type': file.contentType,
    'Cache-Control': file.cacheControl,
    'Last-Modified': file.lastModified,
    'Access-Control-Allow-Origin': '*',
    ...(file.contentType === PLAYLIST_HEADERS['Content-Type'] ? { Pragma: 'no-cache', Expires: '0' } : {}),
  });
  res.end(file.data);
}

export function broadcastRoutes({ broadcasts, apiToken }: BroadcastRoutesDeps): Router {
  const r = Router();
  const auth = requireToken(apiToken);

  // Public: the playlist, and any of its files by name (404 while FFmpeg has written nothing,
  // which the editor's cold-start poll reads as "not yet").
  r.get('/broadcast/:id/live.m3u8', async (req, res) => {
    const id = String(req.params.id);
    const file = NETWORK_ID_RE.test(id) ? await broadcasts.file(id, 'live.m3u8') : null;
    if (!file) throw new AppError(404, 'NOT_FOUND', 'Playlist not available');
    res.status(200).set(PLAYLIST_HEADERS);
    res.end(file.data);
  });

  const segment = (alias: boolean) => async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    const id = String(req.params.id);
    const name = String(req.params.file);
    // Ours: a player that opens the proxy's own live.m3u8 resolves `live000001.ts` against
    // /broadcast/{id}/, so those names answer there too (§2.3 "direct playback").
    if (alias && !/^live(\d+\.(ts|vtt)|_vtt\.m3u8)$/.test(name)) return next();
    const file = NETWORK_ID_RE.test(id) ? await broadcasts.file(id, name) : null;
    if (!file) throw new AppError(404, 'NOT_FOUND', 'Segment not found');
    sendFile(res, file);
  };
  r.get('/broadcast/:id/segment/:file', segment(false));

  r.post('/broadcast/:id/start', auth, async (req, res) => {
    const id = networkId(req);
    const body = parseBody(startBroadcastSchema, req.body);
    res.json(await broadcasts.start(id, body));
  });

  r.post('/broadcast/:id/stop', auth, async (req, res) => {
    const id = networkId(req);
    const { final } = await broadcasts.stop(id);
    res.json({ message: 'Broadcast stopped', network_id: id, final_segment_number: final, status: 'stopped' });
  });

  r.get('/broadcast/:id/status', auth, async (req, res) => {
    res.json(await broadcasts.status(networkId(req)));
  });

  r.get('/broadcast', auth, async (_req, res) => {
    const list = await broadcasts.list();
    res.json({ broadcasts: list, count: list.length });
  });

  r.delete('/broadcast/:id', auth, async (req, res) => {
    const id = networkId(req);
    await broadcasts.delete(id);
    res.json({ message: `Broadcast ${id} cleaned up successfully` });
  });

  r.get('/broadcast/:id/:file', segment(true));
  return r;
}
