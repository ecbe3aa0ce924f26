// A cluster worker's load, reported to the primary: one report read by both of the primary's
// parts that judge workers — the front door (src/primary/connection-dispatcher.ts: answers new
// viewers itself while every worker refuses them) and the viewer hand-off
// (src/primary/handoff-router.ts: hands a viewer only to an owner with room). Sent when whether
// the worker refuses new viewers changes (looked at LOOK_MS), else every EVERY_MS: the front
// door must learn of a refusal within a fraction of a second, the hand-off needs the count
// only once a second (it counts its own moves in between).

/** A worker's load as it reports it (API-free; one per worker). */
export interface WorkerLoad {
  workerId: string;
  /** Live viewers it serves (relay feeds to other workers included). */
  viewers: number;
  /** Its admission refuses new viewers now (src/streams/live/admission.ts). */
  overloaded: boolean;
}

/** worker → primary. */
export type WorkerLoadMessage = { t: 'worker:load' } & WorkerLoad;

export interface LoadReportOptions {
  workerId: string;
  /** The load now, as admission counts it. */
  load: () => Omit<WorkerLoad, 'workerId'>;
  /** process.send of a cluster worker (with a callback: a closed channel must not emit 'error'); a throw is ignored. */
  send: (msg: WorkerLoadMessage) => unknown;
  /** ms between looks (default LOOK_MS). */
  lookMs?: number;
  /** ms between reports at the latest (default EVERY_MS). */
  everyMs?: number;
}

const LOOK_MS = 250;
const EVERY_MS = 1000;

/** A parsed `worker:load` message, or null if `msg` is not one. */
export function workerLoad(msg: unknown): WorkerLoad | null {
  const m = msg as Partial<WorkerLoadMessage> | null;
  if (m?.t !== 'worker:load' || typeof m.workerId !== 'string') return null;
  return { workerId: m.workerId, viewers: Number(m.viewers) || 0, overloaded: m.overloaded === true };
}

/** Starts reporting (the first report at once); returns the function that stops it. */
export function reportLoad(opts: LoadReportOptions): () => void {
  const everyMs = opts.everyMs ?? EVERY_MS;
  let last: boolean | null = null;
  let sentAt = 0;
  const look = (): void => {
    const load = opts.load();
    const now = Date.now();
    if (load.overloaded === last && now - sentAt < everyMs) return;
    last = load.overloaded;
    sentAt = now;
    try {
      opts.send({ t: 'worker:load', workerId: opts.workerId, ...load });
    } catch {
      // The primary is gone: the worker stops on 'disconnect'.
    }
  };
  look();
  const timer = setInterval(look, opts.lookMs ?? LOOK_MS);
  timer.unref();
  return () => clearInterval(timer);
}
