// One-process mode (`npm run start:single`): one worker, no cluster, the coordinator in
// memory. For debugging and tiny boxes; `npm start` runs the cluster.
import { exitOnConfigError, loadConfig, type Config } from './config.js';
import { MemoryCoordinator } from './coordination/memory-coordinator.js';
import { createLogger } from './logger.js';
import { renderAggregate } from './metrics/aggregate.js';
import { HostMetrics } from './metrics/host-metrics.js';
import { startWorker } from './worker.js';

let config: Config;
try {
  config = loadConfig();
} catch (err) {
  exitOnConfigError(err);
}

const workerId = `${config.workerId}-1`;
const logger = createLogger({ level: config.logLevel, format: config.logFormat, workerId });
if (!config.apiToken) {
  logger.warn('API_TOKEN is not set: the management API is open to anyone who can reach this port');
}
const coordinator = new MemoryCoordinator();
// One process is the whole host: its metrics are this worker's plus the host's own.
const host = new HostMetrics({
  expectedWorkers: 1, runningWorkers: () => 1, restarts: () => [], coordinator, processMetrics: false,
});
const worker = await startWorker({
  config, logger, coordinator, workerId,
  scrapeMetrics: async (own) => renderAggregate([await host.json(), await own.json()]),
});
logger.info('primary ready', { port: worker.port, workers: 1, pid: process.pid });

let stopping = false;
const stop = (signal: string): void => {
  if (stopping) return;
  stopping = true;
  logger.info('stopping', { signal });
  const force = setTimeout(() => process.exit(0), config.drainTimeoutMs);
  force.unref();
  void worker.close(config.drainTimeoutMs).then(() => coordinator.close()).then(() => process.exit(0));
};
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
