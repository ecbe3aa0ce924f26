// Failover is the owner's business: only the worker holding a stream's lease runs its source.
// This makes any worker (or host) able to act on it and to report it:
// - the owner writes its source's figures (current URL, index, attempts, errors, last reason)
//   to the coordinator value `source:{id}` whenever they change, so `/streams/{id}` shows the
//   owner's state whichever worker answers;
// - `POST /streams/{id}/failover` on a worker that is not the owner is published on the event
//   channel as `failover_request`; the owner switches (exactly once) and answers with
//   `failover_result`, carrying its new state.
import { randomUUID } from 'node:crypto';
import type { Coordinator, CoordinatorEvent } from '../../coordination/coordinator.js';
import type { Logger } from '../../logger.js';
import type { SourceState } from '../sources/failover-plan.js';

/** What an owner's session offers this module. */
export interface FailoverOwner {
  failover(): Promise<boolean>;
  readonly failoverPlan: { state(): SourceState } | null;
}

export interface FailoverControlOptions {
  coordinator: Coordinator;
  logger: Logger;
  /** The session of `streamId` whose source this worker owns, if any. */
  ownerOf: (streamId: string) => FailoverOwner | undefined;
  /** How long a request waits for the owner's answer (the resolver may take 10 s). */
  answerTimeoutMs?: number;
}

export interface FailoverAnswer {
  /** Whether a source was switched. */
  switched: boolean;
  /** Whether some worker owns a running source for the stream. */
  running: boolean;
  state: SourceState | null;
}

const REQUEST = 'failover_request';
const RESULT = 'failover_result';
const STATE_TTL_MS = 24 * 3600_000;
const ANSWER_TIMEOUT_MS = 12_000;
const stateKey = (id: string): string => `source:${id}`;

export class FailoverControl {
  private readonly waiting = new Map<string, (answer: FailoverAnswer) => void>();
  /** One state write at a time per stream, so the latest always lands last. */
  private readonly writes = new Map<string, Promise<void>>();
  private readonly unsubscribe: () => void;

  constructor(private readonly opts: FailoverControlOptions) {
    this.unsubscribe = opts.coordinator.subscribe((e) => this.onEvent(e));
  }

  /** Owner side: the source's figures changed. */
  saveState(streamId: string, state: SourceState): void {
    const { coordinator, logger } = this.opts;
    const prev = this.writes.get(streamId) ?? Promise.resolve();
    const next = prev.then(() =>
      coordinator.setValue(stateKey(streamId), JSON.stringify(state), { ttlMs: STATE_TTL_MS }).then(
        () => undefined,
        (err: unknown) => {
          logger.warn('source state write failed', { stream_id: streamId, error: String(err) });
        },
      ));
    this.writes.set(streamId, next);
    void next.then(() => {
      if (this.writes.get(streamId) === next) this.writes.delete(streamId);
    });
  }

  /** The owner's figures: from this worker's source when it owns it, else from the coordinator. */
  async state(streamId: string): Promise<SourceState | null> {
    const local = this.opts.ownerOf(streamId)?.failoverPlan;
    if (local) return local.state();
    try {
      const raw = await this.opts.coordinator.getValue(stateKey(streamId));
      return raw ? (JSON.parse(raw) as SourceState) : null;
    } catch {
      return null;
    }
  }

  forget(streamId: string): void {
    void this.opts.coordinator.deleteValue(stateKey(streamId)).catch(() => undefined);
  }

  /** Manual failover from any worker: acts on the owner, wherever it is. */
  async request(streamId: string): Promise<FailoverAnswer> {
    const local = this.opts.ownerOf(streamId);
    if (local) {
      const switched = await local.failover();
      return { switched, running: true, state: local.failoverPlan?.state() ?? null };
    }
    const { coordinator } = this.opts;
    const status = await coordinator.getStreamStatus(streamId);
    if (status?.status !== 'running') return { switched: false, running: false, state: await this.state(streamId) };
    const requestId = randomUUID();
    const answer = new Promise<FailoverAnswer>((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(requestId);
        resolve({ switched: false, running: false, state: null });
      }, this.opts.answerTimeoutMs ?? ANSWER_TIMEOUT_MS);
      this.waiting.set(requestId, (a) => {
        clearTimeout(timer);
        this.waiting.delete(requestId);
        resolve(a);
      });
    });
    await coordinator.publish({ type: REQUEST, streamId, data: { request_id: requestId } });
    const got = await answer;
    return { ...got, state: got.state ?? (await this.state(streamId)) };
  }

  close(): void {
    this.unsubscribe();
    for (const resolve of this.waiting.values()) resolve({ switched: false, running: false, state: null });
    this.waiting.clear();
  }

  private onEvent(e: CoordinatorEvent): void {
    const requestId = typeof e.data?.request_id === 'string' ? e.data.request_id : null;
    if (!requestId || !e.streamId) return;
    if (e.type === RESULT) {
      this.waiting.get(requestId)?.({
        switched: e.data?.switched === true, running: true, state: (e.data?.state as SourceState | null) ?? null,
      });
      return;
    }
    if (e.type !== REQUEST) return;
    const owner = this.opts.ownerOf(e.streamId);
    if (!owner) return; // another worker owns it (or nobody: the requester times out)
    const streamId = e.streamId;
    void owner.failover().then((switched) =>
      this.opts.coordinator.publish({
        type: RESULT, streamId, data: { request_id: requestId, switched, state: owner.failoverPlan?.state() ?? null },
      })).catch((err: unknown) => this.opts.logger.warn('failover request failed', { stream_id: streamId, error: String(err) }));
  }
}
