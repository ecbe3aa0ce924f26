// `GET /metrics` (DESIGN.md §7, API.md §2): the Prometheus text of the whole host, whichever
// worker answers. Needs the API token like the management API, unless METRICS_PUBLIC=true.
import { Router, type NextFunction, type Request, type Response } from 'express';
import { AppError } from '../../errors.js';
import { METRICS_CONTENT_TYPE } from '../../metrics/aggregate.js';
import { safeEqual } from '../../safe-equal.js';
import { authError, tokenState } from '../auth.js';

export interface MetricsRoutesDeps {
  apiToken: string | undefined;
  metricsPublic: boolean;
  /** The host's metrics text (through the primary in the cluster). */
  scrape: () => Promise<string>;
}

export function metricsRoutes({ apiToken, metricsPublic, scrape }: MetricsRoutesDeps): Router {
  const r = Router();
  const auth = (req: Request, res: Response, next: NextFunction): void => {
    if (metricsPublic) return next();
    let state = tokenState(req, apiToken);
    // Prometheus sends credentials as `Authorization: Bearer` (authorization.credentials_file).
    const bearer = /^Bearer (.+)$/i.exec(req.get('authorization') ?? '')?.[1];
    if (state === 'missing' && bearer !== undefined) state = safeEqual(bearer, apiToken!) ? 'valid' : 'invalid';
    const err = authError(state);
    if (err?.status === 401) res.set('WWW-Authenticate', 'Bearer');
    next(err ?? undefined);
  };
  r.get('/metrics', auth, async (_req: Request, res: Response) => {
    let text: string;
    try {
      text = await scrape();
    } catch {
      throw new AppError(500, 'INTERNAL', 'The host\'s metrics could not be gathered');
    }
    res.set({ 'Content-Type': METRICS_CONTENT_TYPE, 'Cache-Control': 'no-store' }).send(text);
  });
  return r;
}
