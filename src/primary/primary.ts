// The cluster primary: listens on PORT and passes each connection to one of WORKERS workers
// (answering new viewers 503 itself while no worker takes them: connection-dispatcher.ts), restarts crashed ones with back-off,
// frees a dead worker's leases at once (so takeover does not wait for the TTL), hosts the
// embedded coordinator when Redis is off, drains everything on SIGTERM, and replaces its
// workers one at a time on SIGHUP (a rolling restart: new code from dist/, no viewer cut).
import cluster, { type Worker } from 'node:cluster';
import type { Config } from '../config.js';
import type { Coordinator } from '../coordination/coordinator.js';
import { forgetWorker } from '../coordination/heartbeat.js';
import { IpcHost } from '../coordination/ipc-host.js';
import { ConnectionDispatcher } from './connection-dispatcher.js';
import { HandoffRouter } from './handoff-router.js';
import type { Logger } from '../logger.js';
import { MetricsHub } from '../metrics/cluster-scrape.js';
import { HostMetrics } from '../metrics/host-metrics.js';
import { QuietGc } from '../quiet-gc.js';

export interface PrimaryDeps {
  config: Config;
  logger: Logger;
  /** Memory (served to workers over IPC) or Redis (the primary only cleans up after workers). */
  coordinator: Coordinator;
  /** The primary cannot serve (PORT taken): it stops; the process should exit non-zero. */
  onFatal?: (err: Error) => void;
}

interface Slot {
  index: number;
  /** The id of the slot's current worker: `{WORKER_ID}-{index}`, `…r{n}` after n rolling restarts. */
  workerId: string;
  worker: Worker | null;
  /** Rolling restarts of this slot: the replacement and the old worker live side by side, so
   *  they need two ids (and, with RELAY_PORT set, two relay ports). */
  generation: number;
  startedAt: number;
  crashes: number;
  restarts: number;
}

const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 30_000;
/** A worker that lived this long is healthy again: its back-off starts over. */
const HEALTHY_AFTER_MS = 30_000;
const KILL_AFTER_DRAIN_MS = 5000;
/** How long a replacement worker may take to listen, and an old one to hand its sources over. */
const REPLACE_READY_MS = 60_000;
const HANDOVER_MS = 15_000;
/** Seconds a player refused here is told to wait, as a worker's admission tells it. */
const RETRY_AFTER_S = 5;

/** One worker process: its id and the FFmpeg pids it reported (killed if it dies: no ghost FFmpeg). */
interface Incarnation {
  slot: Slot;
  workerId: string;
  pids: number[];
}

export class Primary {
  private readonly slots: Slot[] = [];
  private readonly ipc: IpcHost | null;
  private stopping = false;
  private rolling = false;
  private readonly incarnations = new Map<Worker, Incarnation>();
  private readyLogged = false;
  private readonly listening = new Set<number>();
  /** Answers workers' `/metrics` with every worker's registry and the host's. */
  private readonly metrics: MetricsHub;
  /** Passes viewers' connections between workers (VIEWER_HANDOFF). */
  private readonly handoffs = new HandoffRouter();
  /** Collects once workers stop passing connections and viewers through here (src/quiet-gc.ts). */
  private readonly quietGc = new QuietGc();
  /** Accepts on PORT and passes each connection to a worker. */
  private readonly front: ConnectionDispatcher;
  port = 0;

  constructor(private readonly deps: PrimaryDeps) {
    this.ipc = deps.coordinator.backend === 'redis' ? null : new IpcHost(deps.coordinator);
    this.front = new ConnectionDispatcher({
      queueMs: deps.config.admissionQueueMs, maxWaitMs: deps.config.admissionMaxWaitMs, minIntakePerS: deps.config.admissionMinIntake, retryAfterS: RETRY_AFTER_S, rootPath: deps.config.rootPath });
    const host = new HostMetrics({
      expectedWorkers: deps.config.workers,
      runningWorkers: () => this.listening.size,
      restarts: () => this.slots.map((s) => [String(s.index), s.restarts]),
      coordinator: deps.coordinator,
      processMetrics: true,
      connections: { refused: () => this.front.refused, waiting: () => this.front.waiting },
    });
    this.metrics = new MetricsHub(() => host.json());
  }

  start(): void {
    const { config } = this.deps;
    for (let i = 1; i <= config.workers; i++) {
      const slot: Slot = { index: i, workerId: `${config.workerId}-${i}`, worker: null, generation: 0, startedAt: 0, crashes: 0, restarts: 0 };
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
    this.front.close();
    // Old workers still draining after a rolling restart stop with the others.
    const alive = [...this.incarnations.keys()].filter((w) => !w.isDead());
    const exits = alive.map((w) => new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once('exit', () => resolve()))));
    for (const w of alive) {
      this.handoffs.forget(w);
      this.front.leave(w);
      if (w.isConnected()) w.send({ t: 'shutdown', drainMs: config.drainTimeoutMs });
    }
    const kill = setTimeout(() => {
      for (const w of alive) if (!w.isDead()) w.process.kill('SIGKILL');
    }, config.drainTimeoutMs + KILL_AFTER_DRAIN_MS);
    await Promise.all(exits);
    clearTimeout(kill);
    this.ipc?.close();
    this.quietGc.close();
    await coordinator.close().catch(() => undefined);
    logger.info('primary stopped');
  }

  /**
   * SIGHUP: replaces the workers one at a time. The replacement is forked (running whatever
   * dist/ holds now) and listens before the old worker stops accepting; the old worker then
   * hands its sources over (the replacement adopts them: it takes each lease the old one
   * releases, and the old one relays from it) and keeps its viewers until they leave or
   * DRAIN_TIMEOUT passes. No viewer is cut and no source runs twice (the lease moves only
   * after the old source stopped).
   */
  async rollingRestart(): Promise<void> {
    if (this.rolling || this.stopping) return;
    this.rolling = true;
    const { logger, config } = this.deps;
    logger.info('rolling restart', { workers: this.slots.length });
    try {
      for (const slot of this.slots) {
        if (this.stopping) break;
        const old = slot.worker;
        slot.generation++;
        const fresh = this.fork(slot);
        if (!(await this.message(fresh, 'worker:ready', REPLACE_READY_MS))) {
          logger.error('replacement worker did not start: the old one stays', { worker_id: slot.workerId });
          slot.worker = old;
          if (!fresh.isDead()) fresh.process.kill('SIGKILL');
          continue;
        }
        if (!old || old.isDead() || !old.isConnected()) continue;
        this.handoffs.forget(old);
        this.front.leave(old);
        old.send({ t: 'handover', drainMs: config.drainTimeoutMs });
        await this.message(old, 'worker:handed-over', HANDOVER_MS);
        const kill = setTimeout(() => {
          if (!old.isDead()) old.process.kill('SIGKILL');
        }, config.drainTimeoutMs + KILL_AFTER_DRAIN_MS);
        old.once('exit', () => clearTimeout(kill));
      }
    } finally {
      this.rolling = false;
    }
    logger.info('rolling restart done', { workers: this.slots.map((s) => s.workerId) });
  }

  /** Resolves true when `worker` sends a message of type `t`, false on exit or timeout. */
  private message(worker: Worker, t: string, timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (ok: boolean): void => {
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('exit', onExit);
        resolve(ok);
      };
      const onMessage = (msg: { t?: string }): void => {
        if (msg?.t === t) done(true);
      };
      const onExit = (): void => done(false);
      const timer = setTimeout(() => done(false), timeoutMs);
      worker.on('message', onMessage);
      worker.once('exit', onExit);
    });
  }

  private fork(slot: Slot): Worker {
    const { config } = this.deps;
    const g = slot.generation;
    slot.workerId = g === 0 ? `${config.workerId}-${slot.index}` : `${config.workerId}-${slot.index}r${g}`;
    const worker = cluster.fork({
      WORKER_INDEX: String(slot.index),
      WORKER_NAME: slot.workerId,
      // With RELAY_PORT set, a replacement binds the other half of 2 × WORKERS ports.
      WORKER_RELAY_INDEX: String(slot.index + (g % 2) * config.workers),
    });
    const inc: Incarnation = { slot, workerId: slot.workerId, pids: [] };
    this.incarnations.set(worker, inc);
    slot.worker = worker;
    slot.startedAt = Date.now();
    this.ipc?.attach(worker);
    this.metrics.attach(worker);
    // Without the hand-off no worker moves viewers: its load reports need no answer.
    if (config.viewerHandoff) this.handoffs.attach(worker);
    worker.on('message', (msg: { t?: string; port?: number; pids?: number[]; sessions?: unknown; method?: string }) => {
      if (this.front.onMessage(worker, msg)) return;
      // The end of a viewer's short-lived state here: its record deleted, its connection passed on.
      if (msg?.t === 'handoff:socket' || (msg?.t === 'coord:call' && msg.method === 'deleteClient')) this.quietGc.note();
      if (msg?.t === 'worker:ready' && slot.worker === worker) void this.onReady(slot, worker);
      if (msg?.t === 'worker:pids' && Array.isArray(msg.pids)) inc.pids = msg.pids.filter((p) => Number.isInteger(p) && p > 1);
      // An old worker's sources go to its replacement, which takes each lease once released.
      if (msg?.t === 'worker:handover' && slot.worker && slot.worker !== worker && slot.worker.isConnected()) {
        slot.worker.send({ t: 'adopt', sessions: msg.sessions });
      }
    });
    worker.once('exit', (code, signal) => void this.onExit(slot, worker, code, signal));
    return worker;
  }

  private killOrphans(inc: Incarnation): void {
    for (const pid of inc.pids) {
      try {
        process.kill(pid, 'SIGKILL');
        this.deps.logger.warn('killed an FFmpeg left by a dead worker', { worker_id: inc.workerId, pid });
      } catch {
        // already gone (its pipe broke when the worker died)
      }
    }
    inc.pids = [];
  }

  /** A worker is up: it takes connections, and PORT is listened on from the first one on. */
  private async onReady(slot: Slot, worker: Worker): Promise<void> {
    const { config, logger } = this.deps;
    this.front.add(worker);
    try {
      this.port = await this.front.listen(config.host, config.port);
    } catch (err) {
      logger.error('cannot listen', { host: config.host, port: config.port, error: String(err) });
      this.deps.onFatal?.(err as Error);
      return;
    }
    if (slot.worker !== worker || worker.isDead()) return;
    this.listening.add(slot.index);
    if (!this.readyLogged && this.listening.size === this.slots.length) {
      this.readyLogged = true;
      logger.info('primary ready', { port: this.port, workers: this.slots.length, pid: process.pid });
    }
  }

  private async onExit(slot: Slot, worker: Worker, code: number | null, signal: string | null): Promise<void> {
    const { logger, coordinator } = this.deps;
    const inc = this.incarnations.get(worker) ?? { slot, workerId: slot.workerId, pids: [] };
    this.incarnations.delete(worker);
    this.front.exited(worker);
    if (slot.worker === worker) this.listening.delete(slot.index);
    this.killOrphans(inc);
    // Its leases go now: viewers on other workers take over without waiting for the TTL.
    await forgetWorker(coordinator, inc.workerId).catch((err: unknown) =>
      logger.warn('could not clean up after a worker', { worker_id: inc.workerId, error: String(err) }));
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
