// The metrics of the host as a whole, kept by the cluster primary (or by the one process of
// `npm run start:single`): build info, expected and running workers, restarts per worker
// slot, the coordinator as the primary sees it, and the primary's own process figures.
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { Coordinator } from '../coordination/coordinator.js';
import { VERSION } from '../version.js';
import { registryJson, type MetricsJson } from './aggregate.js';
import { DEFAULT_METRICS_OPTIONS, HOST_METRICS as H } from './definitions.js';
import { counter, gauge, within } from './metric-factory.js';

export interface HostMetricsOptions {
  expectedWorkers: number;
  /** Workers listening now. */
  runningWorkers: () => number;
  /** Restarts so far per worker slot (`worker` label → count). */
  restarts: () => Array<[worker: string, restarts: number]>;
  coordinator: Coordinator;
  /** False in one-process mode: the worker's registry already has the process figures. */
  processMetrics: boolean;
  /** The primary's connection dispatcher (cluster only): refused so far, waiting now. */
  connections?: { refused: () => number; waiting: () => number };
}

const PING_TIMEOUT_MS = 1000;
const WORKER = 'primary';

export class HostMetrics {
  readonly registry = new Registry();
  private readonly running;
  private readonly restarts;
  private readonly coordinatorUp;
  private readonly connections;

  constructor(private readonly opts: HostMetricsOptions) {
    const r = this.registry;
    if (opts.processMetrics) collectDefaultMetrics({ ...DEFAULT_METRICS_OPTIONS, register: r, labels: { worker: WORKER } });
    gauge(H.buildInfo, r).set({ version: VERSION, node_version: process.version }, 1);
    gauge(H.workersExpected, r).set(opts.expectedWorkers);
    this.running = gauge(H.workersRunning, r);
    this.restarts = counter(H.workerRestarts, r);
    this.coordinatorUp = opts.processMetrics ? gauge(H.coordinatorUp, r) : null;
    this.connections = opts.connections ? { refused: counter(H.connectionsRefused, r), waiting: gauge(H.connectionsWaiting, r) } : null;
  }

  async json(): Promise<MetricsJson> {
    const { opts } = this;
    this.running.set(opts.runningWorkers());
    this.restarts.reset();
    for (const [worker, n] of opts.restarts()) this.restarts.inc({ worker }, n);
    if (this.connections && opts.connections) {
      this.connections.refused.reset();
      this.connections.refused.inc(opts.connections.refused());
      this.connections.waiting.set(opts.connections.waiting());
    }
    if (this.coordinatorUp) {
      const up = await within(opts.coordinator.ping(), PING_TIMEOUT_MS, false);
      this.coordinatorUp.set({ worker: WORKER, backend: opts.coordinator.backend }, up ? 1 : 0);
    }
    return registryJson(this.registry);
  }
}
