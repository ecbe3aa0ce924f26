// Worker liveness: a heartbeat into the `workers` hash every HEARTBEAT_INTERVAL, and a sweep
// every CLEANUP_INTERVAL that forgets workers silent for 3 intervals (idempotent: any worker
// may run it), so their leases free up and their streams are taken over.
import type { Coordinator, WorkerRecord } from './coordinator.js';

export interface HeartbeatOptions {
  coordinator: Coordinator;
  record: () => WorkerRecord;
  intervalMs: number;
  cleanupIntervalMs: number;
  onError?: (what: string, err: unknown) => void;
  onSwept?: (workerIds: string[]) => void;
}

/**
 * Removes a worker's leases, its viewers' records, its claim to own streams (`stream:{id}`
 * status) and then its record: the record goes last, so a sweep cut short is finished by the
 * next one. `seen`: the stale record a sweep found; the worker is forgotten only if that is
 * still its record (a worker restarted under the same id has another pid or start time, and
 * one that beat meanwhile another last_seen): returns false when it was left alone.
 */
export async function forgetWorker(coordinator: Coordinator, workerId: string, seen?: WorkerRecord): Promise<boolean> {
  if (seen) {
    const now = (await coordinator.listWorkers()).find((w) => w.workerId === workerId);
    if (!now || now.pid !== seen.pid || now.startedAt !== seen.startedAt || now.lastSeen !== seen.lastSeen) return false;
  }
  await coordinator.releaseLeasesHeldBy(workerId);
  const clients = await coordinator.listClients();
  await Promise.all(clients.filter((c) => c.workerId === workerId).map((c) => coordinator.deleteClient(c.streamId, c.clientId)));
  await clearOwnership(coordinator, workerId);
  await coordinator.removeWorker(workerId);
  return true;
}

/**
 * A dead worker owns nothing: its `running` statuses become `stopped` without an owner. The
 * write carries the stored epoch, so a new owner that already wrote (a newer epoch) wins.
 */
async function clearOwnership(coordinator: Coordinator, workerId: string): Promise<void> {
  const defs = await coordinator.listStreams();
  await Promise.all(defs.map(async (def) => {
    const st = await coordinator.getStreamStatus(def.id);
    if (st?.owner !== workerId) return;
    await coordinator.setStreamStatus(def.id, { ...st, status: 'stopped', owner: null, pid: null, updatedAt: new Date().toISOString() });
  }));
}

/** Workers whose last heartbeat is older than 3 intervals. */
export function staleWorkers(workers: WorkerRecord[], intervalMs: number, now = Date.now()): WorkerRecord[] {
  return workers.filter((w) => now - Date.parse(w.lastSeen) > 3 * intervalMs);
}

export class Heartbeat {
  private beatTimer: NodeJS.Timeout | null = null;
  private sweepTimer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly opts: HeartbeatOptions) {}

  async start(): Promise<void> {
    await this.beat();
    this.beatTimer = setInterval(() => void this.beat(), this.opts.intervalMs);
    this.sweepTimer = setInterval(() => void this.sweep(), this.opts.cleanupIntervalMs);
    this.beatTimer.unref();
    this.sweepTimer.unref();
  }

  async beat(): Promise<void> {
    if (this.stopped) return; // a late beat must not bring a stopped worker's record back
    try {
      await this.opts.coordinator.putWorker(this.opts.record());
    } catch (err) {
      this.opts.onError?.('heartbeat', err);
    }
  }

  async sweep(): Promise<string[]> {
    try {
      const { coordinator, intervalMs } = this.opts;
      const stale = staleWorkers(await coordinator.listWorkers(), intervalMs);
      const swept: string[] = [];
      for (const w of stale) if (await forgetWorker(coordinator, w.workerId, w)) swept.push(w.workerId);
      if (swept.length > 0) this.opts.onSwept?.(swept);
      return swept;
    } catch (err) {
      this.opts.onError?.('sweep', err);
      return [];
    }
  }

  /** Stops beating and removes this worker's record. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.beatTimer) clearInterval(this.beatTimer);
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.beatTimer = this.sweepTimer = null;
    const { workerId } = this.opts.record();
    await forgetWorker(this.opts.coordinator, workerId).catch((err: unknown) => this.opts.onError?.('stop', err));
  }
}
