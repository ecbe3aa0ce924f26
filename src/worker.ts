// One HTTP worker: the coordinator it is given, the stream engine, the express app, and a
// listening server. The cluster primary forks these; alone it is the one-process mode.
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import type { Config } from './config.js';
import type { Coordinator } from './coordination/coordinator.js';
import { detectToolVersions, type ToolVersions } from './ffmpeg/tool-versions.js';
import { createApp } from './http/app.js';
import { UrlSigner } from './http/url-signer.js';
import type { Logger } from './logger.js';
import { StreamEngine } from './streams/stream-engine.js';
import { StreamService } from './streams/stream-service.js';

export interface WorkerDeps {
  config: Config;
  logger: Logger;
  coordinator: Coordinator;
  workerId: string;
  workers?: () => Promise<{ expected: number; alive: number }>;
}

export interface RunningWorker {
  server: http.Server;
  engine: StreamEngine;
  app: ReturnType<typeof createApp>;
  port: number;
  close(): Promise<void>;
}

const once = <T>(fn: () => Promise<T>): (() => Promise<T>) => {
  let p: Promise<T> | null = null;
  return () => (p ??= fn());
};

/** Builds a worker's parts without listening (tests use the app with supertest). */
export function buildWorker(deps: WorkerDeps) {
  const { config, logger, coordinator, workerId } = deps;
  const engine = new StreamEngine({ config, coordinator, logger, workerId });
  const service = new StreamService({ config, coordinator, engine });
  const signer = once(async () => {
    const secret = config.urlSigningSecret ??
      (await coordinator.getOrSetValue('url_signing_secret', () => randomBytes(32).toString('base64url')));
    return new UrlSigner(secret, config.signedUrlTtlMs);
  });
  const versions: () => Promise<ToolVersions> = once(() => detectToolVersions(config.ffmpegPath));
  const app = createApp({
    config, logger, coordinator, engine, service, signer, workerId, versions,
    startedAt: new Date(),
    workers: deps.workers ?? (async () => ({ expected: 1, alive: 1 })),
  });
  return { app, engine, service, signer };
}

export async function startWorker(deps: WorkerDeps): Promise<RunningWorker> {
  const { config, logger } = deps;
  const { app, engine } = buildWorker(deps);
  const server = http.createServer({ keepAliveTimeout: 5000, requestTimeout: 0 }, app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // A large backlog: a burst of players connecting at once is admitted without waiting.
    server.listen({ host: config.host, port: config.port, backlog: 4096 }, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  logger.info('worker listening', { host: config.host, port });
  return {
    server, engine, app, port,
    async close() {
      server.close();
      await engine.close();
      server.closeAllConnections();
    },
  };
}
