// `npm start`: the cluster. The primary forks WORKERS workers sharing PORT; each worker runs
// the HTTP app and the stream engine. Configuration is parsed once in each process.
import cluster from 'node:cluster';
import { exitOnConfigError, loadConfig, type Config } from './config.js';
import { createCoordinator } from './coordination/create-coordinator.js';
import { createLogger } from './logger.js';
import { answerCollects, scrapeThroughPrimary } from './metrics/cluster-scrape.js';
import { Socket } from 'node:net';
import type { ConnectionMessage } from './primary/connection-dispatcher.js';
import { Primary } from './primary/primary.js';
import { startWorker, type AdoptedSession, type RunningWorker } from './worker.js';

/**
 * A worker's message to the primary. Always with a callback: without one, a send on a closed
 * channel (the primary died) is an 'error' event on process, uncaught, and the worker would
 * crash while it drains.
 */
const tell = (msg: object): void => void process.send?.(msg, undefined, undefined, () => undefined);

let config: Config;
try {
  config = loadConfig();
} catch (err) {
  exitOnConfigError(err);
}

if (cluster.isPrimary) {
  const logger = createLogger({ level: config.logLevel, format: config.logFormat, workerId: `${config.workerId}-primary` });
  if (!config.apiToken) logger.warn('API_TOKEN is not set: the management API is open to anyone who can reach this port');
  const stop = (signal: string, code = 0): void => void primary.stop(signal).then(() => process.exit(code));
  const primary = new Primary({
    config, logger, coordinator: createCoordinator(config, logger, 'primary'),
    onFatal: () => stop('cannot listen', 1),
  });
  primary.start();
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => void primary.rollingRestart());
} else {
  const index = Number(process.env.WORKER_INDEX ?? '1');
  // The primary names it (a replacement during a rolling restart has its own id).
  const workerId = process.env.WORKER_NAME ?? `${config.workerId}-${index}`;
  const relayIndex = Number(process.env.WORKER_RELAY_INDEX ?? index);
  const logger = createLogger({ level: config.logLevel, format: config.logFormat, workerId });
  const coordinator = createCoordinator(config, logger, 'worker');
  // Answered from the start (empty until the worker is up), so no scrape waits on a starting worker.
  let running: RunningWorker | null = null;
  answerCollects(async () => (running ? running.metrics.json() : []));
  const worker = await startWorker({
    config, logger, coordinator, workerId, index: relayIndex, expectedWorkers: config.workers, scrapeMetrics: () => scrapeThroughPrimary(),
    // Always with a callback, as tell().
    ipcSend: (msg, handle, options, cb) => process.send!(msg, handle, options, cb ?? (() => undefined)),
    acceptFromPrimary: true,
  });
  running = worker;
  tell({ t: 'worker:ready', port: worker.port });
  let stopping = false;
  const stop = async (drainMs: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await worker.close(drainMs).catch((err: unknown) => logger.error('worker close failed', { error: String(err) }));
    await coordinator.close().catch(() => undefined);
    process.exit(0);
  };
  // Rolling restart: stop accepting, give the sources to the replacement (through the
  // primary), report, then drain like a shutdown.
  const handOver = async (drainMs: number): Promise<void> => {
    if (stopping) return;
    const sessions = worker.handOver();
    tell({ t: 'worker:handover', sessions });
    worker.releaseSources();
    tell({ t: 'worker:handed-over' });
    await stop(drainMs);
  };
  process.on('message', (msg: { t?: string; drainMs?: number; sessions?: unknown }, handle: unknown) => {
    if (msg?.t === 'conn') {
      // Said first: the primary sends the next connection while this one is served.
      tell({ t: 'conn:taken' } satisfies ConnectionMessage);
      if (handle instanceof Socket) worker.accept(handle, (msg as { head?: unknown }).head);
      return;
    }
    if (worker.handoff?.onMessage(msg, handle)) return;
    if (msg?.t === 'shutdown') void stop(msg.drainMs ?? 0);
    if (msg?.t === 'handover') void handOver(msg.drainMs ?? 0);
    if (msg?.t === 'adopt' && Array.isArray(msg.sessions)) worker.adopt(msg.sessions as AdoptedSession[]);
  });
  // The primary decides when workers stop or restart: a terminal's signals reach every process.
  process.on('SIGINT', () => undefined);
  process.on('SIGTERM', () => undefined);
  process.on('SIGHUP', () => undefined);
  // The primary is gone (killed): nothing will coordinate this worker any more.
  process.on('disconnect', () => void stop(0));
}
