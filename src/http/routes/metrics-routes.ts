// `GET /metrics` (DESIGN.md §7, API.md §2): the Prometheus text of the whole host, whichever
// worker answers. Needs the API token like the management API, unless METRICS_PUBLIC=true.
import { Router, type NextFunction, type Request, type Response } from 'express';
import { AppError } from '../../errors.js';
import { METRICS_CONTENT_TYPE } from '../../metrics/aggregate.js';
import { requireToken } from '../auth.js';

export interface MetricsRoutesDeps {
  apiToken: string | undefined;
  metricsPublic: boolean;
  /** The host's metrics text (through the primary in the cluster). */
  scrape: () => Promise<string>;
}

export function metricsRoutes({ apiToken, metricsPublic, scrape }: MetricsRoutesDeps): Router {
  const r = Router();
  const auth = metricsPublic ? (_req: Request, _res: Response, next: NextFunction) => next() : requireToken(apiToken);
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
