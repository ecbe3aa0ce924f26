// The express app of one worker. Built from injected parts so supertest needs no port.
import express, { Router, type NextFunction, type Request, type Response } from 'express';
import type { Config } from '../config.js';
import type { Coordinator } from '../coordination/coordinator.js';
import { AppError } from '../errors.js';
import type { ToolVersions } from '../ffmpeg/tool-versions.js';
import type { Logger } from '../logger.js';
import type { StreamEngine } from '../streams/stream-engine.js';
import type { StreamService } from '../streams/stream-service.js';
import type { BroadcastService } from '../streams/broadcast/broadcast-service.js';
import { requireToken } from './auth.js';
import { errorHandler, notFound } from './error-handler.js';
import { broadcastRoutes } from './routes/broadcast-routes.js';
import type { HlsEngine } from '../streams/hls/hls-engine.js';
import { hlsRoutes } from './routes/hls-routes.js';
import { playerRoutes } from './routes/player-routes.js';
import { metricsRoutes } from './routes/metrics-routes.js';
import { validateRequestValues } from './request-values.js';
import { statusRoutes } from './routes/status-routes.js';
import { streamsRoutes } from './routes/streams-routes.js';
import type { Transcoder } from '../streams/transcode/transcoder.js';
import { transcodeRoutes } from './routes/transcode-routes.js';
import { cookiesRoutes } from './routes/cookies-routes.js';
import { docsRoutes } from './routes/docs-routes.js';
import { mountedRoutes, openApiDocument } from './openapi.js';
import swaggerUi from 'swagger-ui-express';
import type { UrlSigner } from './url-signer.js';
import type { SocketHandoff } from './socket-handoff.js';
import type { WebhookDispatcher } from '../streams/events/webhook-dispatcher.js';
import { webhooksRoutes } from './routes/webhooks-routes.js';

export interface AppDeps {
  config: Config;
  logger: Logger;
  coordinator: Coordinator;
  engine: StreamEngine;
  service: StreamService;
  signer: () => Promise<UrlSigner>;
  workerId: string;
  startedAt: Date;
  versions: () => Promise<ToolVersions>;
  /** Workers the deployment expects on this host (for /health). */
  expectedWorkers: number;
  transcoder: Transcoder;
  dispatcher: WebhookDispatcher;
  hls: HlsEngine;
  /** Moves live viewers to the worker of this host that owns their source; absent outside a cluster. */
  handoff?: SocketHandoff;
  /** `/broadcast/*` (BROADCAST.md); absent → those routes answer 404. */
  broadcasts?: BroadcastService;
  /** `/metrics` and the request counters; absent: no /metrics route. */
  metrics?: {
    httpMiddleware: (req: Request, res: Response, next: NextFunction) => void;
    scrape: () => Promise<string>;
  };
}

const BODY_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** 415 for a body that is not JSON; a request without a body passes. */
function requireJson(req: Request, _res: Response, next: NextFunction): void {
  const hasBody = Number(req.get('content-length') ?? 0) > 0 || req.get('transfer-encoding') !== undefined;
  if (BODY_METHODS.has(req.method) && hasBody && !req.is('application/json')) {
    return next(new AppError(415, 'UNSUPPORTED_MEDIA_TYPE', 'The request body must be JSON (Content-Type: application/json)'));
  }
  next();
}

function commonHeaders(workerId: string) {
  return (req: Request, res: Response, next: NextFunction): void => {
    res.set({
      'X-Worker-Id': workerId,
      'Access-Control-Allow-Origin': '*',
      'Access-Control-Allow-Methods': '*',
      'Access-Control-Allow-Headers': '*',
      'Access-Control-Expose-Headers': '*',
    });
    if (req.method === 'OPTIONS') {
      res.status(204).end();
      return;
    }
    next();
  };
}

export function createApp(deps: AppDeps): express.Express {
  const { config, logger } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.disable('etag');
  app.set('trust proxy', config.trustProxy);
  app.set('query parser', 'simple');

  const auth = requireToken(config.apiToken);
  const routes = Router();
  if (deps.metrics) routes.use(deps.metrics.httpMiddleware);
  routes.use(commonHeaders(deps.workerId));
  routes.use(validateRequestValues);
  routes.use(requireJson, express.json({ limit: config.maxBodyBytes, strict: false }));
  if (deps.metrics) {
    routes.use(metricsRoutes({ apiToken: config.apiToken, metricsPublic: config.metricsPublic, scrape: deps.metrics.scrape }));
  }
  routes.use(playerRoutes({ ...deps, apiToken: config.apiToken, rootPath: config.rootPath }));
  routes.use(hlsRoutes({ ...deps, apiToken: config.apiToken, rootPath: config.rootPath }));
  // Swagger UI's own scripts and styles (no data of ours): public, so the page can load them.
  routes.use('/docs/assets', swaggerUi.serveWithOptions({ index: false }));
  // Before the token gate: its playlist and segments are public, the rest checks the token itself.
  if (deps.broadcasts) routes.use(broadcastRoutes({ broadcasts: deps.broadcasts, apiToken: config.apiToken }));
  routes.use(auth);
  routes.use(streamsRoutes({ ...deps, defaultUserAgent: config.defaultUserAgent }));
  routes.use(statusRoutes(deps));
  routes.use(transcodeRoutes({ ...deps, defaultUserAgent: config.defaultUserAgent }));
  routes.use(cookiesRoutes());
  routes.use(docsRoutes(() => openApiDocument(mountedRoutes(routes, auth), config.rootPath)));
  routes.use(webhooksRoutes(deps));

  // Both base paths serve the same routes (API.md §1).
  if (config.rootPath) app.use(config.rootPath, routes);
  app.use(routes);
  app.use(notFound);
  app.use(errorHandler(logger, config.maxBodyBytes));
  return app;
}
