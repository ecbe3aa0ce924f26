// Starts a real proxy worker on 127.0.0.1, a random port, with test-friendly settings.
import { parseConfig, type Config } from '../../src/config.js';
import { MemoryCoordinator } from '../../src/coordination/memory-coordinator.js';
import { createLogger } from '../../src/logger.js';
import { buildWorker, startWorker, type RunningWorker } from '../../src/worker.js';

export interface TestProxy {
  config: Config;
  worker: RunningWorker;
  coordinator: MemoryCoordinator;
  base: string;
  url(path: string): string;
  close(): Promise<void>;
}

export function testConfig(env: Record<string, string> = {}): Config {
  return parseConfig({ HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'error', WORKER_ID: 'test', ...env });
}

const silentLogger = () => createLogger({ level: 'error', format: 'json', silent: !process.env.TEST_LOGS });

export async function startProxy(env: Record<string, string> = {}): Promise<TestProxy> {
  const config = testConfig(env);
  const coordinator = new MemoryCoordinator();
  const worker = await startWorker({ config, logger: silentLogger(), coordinator, workerId: 'test-1' });
  const base = `http://127.0.0.1:${worker.port}`;
  return {
    config, worker, coordinator, base,
    url: (path) => `${base}${path}`,
    async close() {
      await worker.close();
      await coordinator.close();
    },
  };
}

/** The express app alone, for supertest (no port). */
export function testApp(env: Record<string, string> = {}) {
  const config = testConfig(env);
  const coordinator = new MemoryCoordinator();
  const parts = buildWorker({ config, logger: silentLogger(), coordinator, workerId: 'test-1' });
  // One live worker record, as its heartbeat would write (the memory store applies it at once).
  const now = new Date().toISOString();
  void coordinator.putWorker({
    workerId: 'test-1', pid: process.pid, host: 'test', startedAt: now, lastSeen: now,
    sources: [], viewers: 0, relay: null, relays: { receiving: 0, serving: 0 },
  });
  return { ...parts, config, coordinator, close: () => parts.engine.close() };
}
