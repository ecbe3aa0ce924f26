// The lifecycle events of API.md §5.1, each emitted ONCE per cluster:
//
// - an event is emitted only by the worker that observed it (the viewer's worker for
//   client_connected/client_disconnected, the source owner for failover_triggered and
//   stream_failed, the answering worker for a deletion) and delivered by that worker alone:
//   no broadcast, so no duplicates whatever the number of workers or hosts;
// - the two cluster-wide facts, "the stream started" and "the last viewer left", have many
//   possible observers. They hang on one coordinator value per stream, `run:{id}`: the worker
//   whose SET NX creates it emits stream_started, the worker whose DEL removes it emits
//   stream_stopped (deletions remove it first, so a deleted stream's departing viewers do not
//   emit a second one). Redis and the embedded store serialise both, so exactly one wins.
//
// Every event is also published on the coordinator's event channel (for in-cluster readers);
// webhook delivery is the WebhookDispatcher's, off the hot path.
import { randomUUID } from 'node:crypto';
import type { Coordinator } from '../../coordination/coordinator.js';
import type { Logger } from '../../logger.js';
import type { StreamDefinition } from '../stream-definition.js';
import type { EventEnvelope, WebhookDispatcher } from './webhook-dispatcher.js';

export const EVENT_TYPES = [
  'stream_started', 'stream_stopped', 'stream_failed',
  'client_connected', 'client_disconnected', 'failover_triggered',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export type StopReason =
  | 'last_client_disconnected'
  | 'manual_deletion'
  | 'metadata_filter_deletion'
  | 'oldest_stream_deletion'
  | 'inactive_timeout'
  | 'source_ended';

export interface StreamEventsOptions {
  coordinator: Coordinator;
  logger: Logger;
  dispatcher: WebhookDispatcher;
}

const runKey = (streamId: string): string => `run:${streamId}`;

/** `stream_type` as the creation answers show it. */
const eventStreamType = (def: StreamDefinition): string =>
  def.kind === 'transcode' ? 'transcoded' : def.kind === 'hls' ? 'hls' : 'direct';

export function envelope(type: string, streamId: string, data: Record<string, unknown>): EventEnvelope {
  return { event_id: randomUUID(), event_type: type, stream_id: streamId, timestamp: new Date().toISOString(), data };
}

export class StreamEvents {
  constructor(private readonly opts: StreamEventsOptions) {}

  /** Emits one event from this worker: webhooks, then the coordinator channel. Never throws. */
  emit(type: EventType, streamId: string, data: Record<string, unknown>): EventEnvelope {
    const event = envelope(type, streamId, data);
    this.opts.dispatcher.dispatch(event);
    this.opts.coordinator
      .publish({ type, streamId, data: { ...event } })
      .catch((err: unknown) => this.opts.logger.warn('event publish failed', { event_type: type, error: String(err) }));
    return event;
  }

  /** A viewer's response started: stream_started first if this is the stream's first one. */
  async viewerStarted(def: StreamDefinition): Promise<void> {
    if (!(await this.safe(() => this.opts.coordinator.setValue(runKey(def.id), new Date().toISOString(), { onlyIfAbsent: true })))) return;
    const data: Record<string, unknown> = {
      primary_url: def.url, failover_urls: def.failoverUrls, user_agent: def.userAgent,
      stream_type: eventStreamType(def), metadata: def.metadata,
    };
    if (def.transcode) {
      data.profile = def.transcode.profile ?? def.transcode.template;
      data.profile_variables = def.transcode.variables;
      data.ffmpeg_args = def.transcode.argv;
    }
    this.emit('stream_started', def.id, data);
  }

  /**
   * The stream may have no viewer left in the cluster: when the coordinator holds no record of it and
   * this worker is the one to end the run, stream_stopped goes out (once).
   */
  async maybeStopped(def: StreamDefinition | null, streamId: string, reason: StopReason, bytesServed: number): Promise<void> {
    const { coordinator } = this.opts;
    // false: the coordinator could not say, and nothing is sent.
    const state = await this.safe(async () => ((await coordinator.hasClients(streamId)) ? 'watched' : 'empty'));
    if (state !== 'empty') return;
    if (!(await this.safe(() => coordinator.deleteValue(runKey(streamId))))) return;
    this.emit('stream_stopped', streamId, { reason, metadata: def?.metadata ?? {}, bytes_served: bytesServed });
  }

  /** A deletion: the run ends here whatever its viewers do next; one stream_stopped always. */
  async deleted(def: StreamDefinition, reason: StopReason, bytesServed: number): Promise<void> {
    await this.safe(() => this.opts.coordinator.deleteValue(runKey(def.id)));
    this.emit('stream_stopped', def.id, { reason, metadata: def.metadata, bytes_served: bytesServed });
  }

  // Events are bookkeeping: a coordinator hiccup is logged, never thrown at a viewer.
  private async safe<T>(fn: () => Promise<T>): Promise<T | false> {
    try {
      return await fn();
    } catch (err) {
      this.opts.logger.warn('event bookkeeping failed', { error: String(err) });
      return false;
    }
  }
}
