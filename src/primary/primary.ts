// The cluster primary: forks WORKERS workers on PORT, restarts crashed ones with back-off,
// frees a dead worker's leases at once (so takeover does not wait for the TTL), hosts the
// embedded coordinator when Redis is off, and drains everything on SIGTERM.
import cluster, { type Worker } from 'node:cluster';
import type { Config } from '../config.js';
import type { Coordinator } from '../coordination/coordinator.js';
import { forgetWorker } from '../coordination/heartbeat.js';
import { IpcHost } from '../coordination/ipc-host.js';
import type { Logger } from '../logger.js';
import { MetricsHub } from '../metrics/cluster-scrape.js';
import { HostMetrics } from '../metrics/host-metrics.js';

export interface PrimaryDeps {
  config: Config;
  logger: Logger;
  /** Memory (served to workers over IPC) or Redis (the primary only cleans up after workers). */
  coordinator: Coordinator;
}

interface Slot {
  index: number;
  workerId: string;
  worker: Worker | null;
  startedAt: number;
  crashes: number;
  restarts: number;
  /** FFmpeg pids the worker reported: killed if the worker dies (no ghost FFmpeg). */
  pids: number[];
}

const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 30_000;
/** A worker that lived this long is healthy again: its back-off starts over. */
const HEALTHY_AFTER_MS = 30_000;
const KILL_AFTER_DRAIN_MS = 5000;

export class Primary {
  private readonly slots: Slot[] = [];
  private readonly ipc: IpcHost | null;
  private stopping = false;
  private readyLogged = false;
  private readonly listening = new Set<number>();
  /** Answers workers' `/metrics` with every worker's registry and the host's. */
  private readonly metrics: MetricsHub;
  port = 0;

  constructor(private readonly deps: PrimaryDeps) {
    this.ipc = deps.coordinator.backend === 'redis' ? null : new IpcHost(deps.coordinator);
    const host = new HostMetrics({
      expectedWorkers: deps.config.workers,
      runningWorkers: () => this.listening.size,
      restarts: () => this.slots.map((s) => [String(s.index), s.restarts]),
      coordinator: deps.coordinator,
      processMetrics: true,
    });
    this.metrics = new MetricsHub(() => host.json());
  }

  start(): void {
    const { config } = this.deps;
    for (let i = 1; i <= config.workers; i++) {
      const slot: Slot = { index: i, workerId: `${config.workerId}-${i}`, worker: null, startedAt: 0, crashes: 0, restarts: 0, pids: [] };
      this.slots.push(slot);
      this.fork(slot);
    }
  }

  /** Stops accepting, lets viewers finish up to DRAIN_TIMEOUT, stops every worker. */
  async stop(signal: string): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const { config, logger, coordinator } = this.deps;
    logger.info('primary stopping', { signal, drain_ms: config.drainTimeoutMs });
    const alive = this.slots.flatMap((s) => (s.worker && !s.worker.isDead() ? [s.worker] : []));
    const exits = alive.map((w) => new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once('exit', () => resolve()))));
    for (const w of alive) {
      if (w.isConnected()) w.send({ t: 'shutdown', drainMs: config.drainTimeoutMs });
    }
    const kill = setTimeout(() => {
      for (const w of alive) if (!w.isDead()) w.process.kill('SIGKILL');
    }, config.drainTimeoutMs + KILL_AFTER_DRAIN_MS);
    await Promise.all(exits);
    clearTimeout(kill);
    this.ipc?.close();
    await coordinator.close().catch(() => undefined);
    logger.info('primary stopped');
  }

  private fork(slot: Slot): void {
    const worker = cluster.fork({ WORKER_INDEX: String(slot.index) });
    slot.worker = worker;
    slot.startedAt = Date.now();
    this.ipc?.attach(worker);
    this.metrics.attach(worker);
    worker.on('message', (msg: { t?: string; port?: number; pids?: number[] }) => {
      if (msg?.t === 'worker:ready' && typeof msg.port === 'number') this.onListening(slot, msg.port);
      if (msg?.t === 'worker:pids' && Array.isArray(msg.pids)) slot.pids = msg.pids.filter((p) => Number.isInteger(p) && p > 1);
    });
    worker.once('exit', (code, signal) => void this.onExit(slot, worker, code, signal));
  }

  private killOrphans(slot: Slot): void {
    for (const pid of slot.pids) {
      try {
        process.kill(pid, 'SIGKILL');
        this.deps.logger.warn('killed an FFmpeg left by a dead worker', { worker_id: slot.workerId, pid });
      } catch {
        // already gone (its pipe broke when the worker died)
      }
    }
    slot.pids = [];
  }

  private onListening(slot: Slot, port: number): void {
    this.port = port;
    this.listening.add(slot.index);
    if (!this.readyLogged && this.listening.size === this.slots.length) {
      this.readyLogged = true;
      this.deps.logger.info('primary ready', { port, workers: this.slots.length, pid: process.pid });
    }
  }

  private async onExit(slot: Slot, worker: Worker, code: number | null, signal: string | null): Promise<void> {
    const { logger, coordinator } = this.deps;
    this.listening.delete(slot.index);
    this.killOrphans(slot);
    // Its leases go now: viewers on other workers take over without waiting for the TTL.
    await forgetWorker(coordinator, slot.workerId).catch((err: unknown) =>
      logger.warn('could not clean up after a worker', { worker_id: slot.workerId, error: String(err) }));
    if (this.stopping || slot.worker !== worker) return;
    const lived = Date.now() - slot.startedAt;
    slot.crashes = lived > HEALTHY_AFTER_MS ? 1 : slot.crashes + 1;
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (slot.crashes - 1));
    slot.restarts++;
    logger.error('worker exited; restarting', {
      worker_id: slot.workerId, pid: worker.process.pid, code, signal, restarts: slot.restarts, delay_ms: delay,
    });
    setTimeout(() => {
      if (!this.stopping) this.fork(slot);
    }, delay);
  }
}
