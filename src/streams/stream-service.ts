// The stream service behind the management API: definitions in the coordinator, run-time
// figures from the engine and the client records, shaped as API.md's entries.
import type { Config } from '../config.js';
import type { ClientRecord, Coordinator } from '../coordination/coordinator.js';
import { streamNotFound } from '../errors.js';
import type { StopReason as EventStopReason, StreamEvents } from './events/stream-events.js';
import type { StreamEngine, TranscodeRuntime } from './stream-engine.js';
import type { MediaInfo, OutputMediaInfo } from './mpegts/media-info.js';
import { mediaReport } from './media-report.js';
import { entryStreamType, kindFromUrl, streamIdForUrl, type StreamDefinition, type TranscodeSpec } from './stream-definition.js';

/** What a client gives for a stream; the rest of the definition is derived or kept. */
export type StreamInput = Omit<StreamDefinition, 'id' | 'kind' | 'createdAt' | 'strictLiveTs' | 'useStickySession'> & {
  /** null: keep the stored value, else the global default. */
  strictLiveTs: boolean | null;
  useStickySession: boolean | null;
};

export type StopReason = Extract<EventStopReason, 'manual_deletion' | 'metadata_filter_deletion' | 'oldest_stream_deletion'>;

export interface ServiceDeps {
  config: Config;
  coordinator: Coordinator;
  engine: StreamEngine;
  events: StreamEvents;
}

/** A stream as API.md §3.4 shows it. */
export interface StreamEntry {
  stream_id: string;
  original_url: string;
  current_url: string;
  user_agent: string;
  stream_type: string;
  client_count: number;
  is_active: boolean;
  total_bytes_served: number;
  total_segments_served: number;
  error_count: number;
  has_failover: boolean;
  failover_urls: string[];
  failover_resolver_url: string | null;
  current_failover_index: number;
  failover_attempts: number;
  last_failover_time: string | null;
  /** Ours: the §5.2 reason of the latest switch. */
  last_failover_reason: string | null;
  created_at: string;
  last_access: string;
  metadata: Record<string, string>;
  owner: { worker_id: string; pid: number | null } | null;
  source_pid: number | null;
  pool_key: string;
  clients_by_worker: Record<string, number>;
  transcode: TranscodeRuntime | null;
  /** Upstream 0.4.x's shapes (API.md §9); `{}` when unknown (see media-report.ts). */
  media_info: MediaInfo;
  output_media_info: OutputMediaInfo;
}

export interface ClientJson {
  client_id: string;
  stream_id: string;
  ip_address: string;
  username: string | null;
  user_agent: string;
  bytes_served: number;
  segments_served: number;
  created_at: string;
  last_access: string;
  is_connected: boolean;
  worker_id: string;
}

export interface Totals {
  total_streams: number;
  active_streams: number;
  total_clients: number;
  active_clients: number;
  total_bytes_served: number;
  total_segments_served: number;
  streams: StreamEntry[];
  clients: ClientJson[];
}

/** A snapshot of the cluster's viewers, taken once per request. */
export interface Snapshot {
  defs: StreamDefinition[];
  clients: ClientRecord[];
  byStream: Map<string, ClientRecord[]>;
}

export class StreamService {
  constructor(private readonly deps: ServiceDeps) {}

  /**
   * Get-or-create: the latest definition wins; a running source is not interrupted. A
   * transcode brings its own id (see transcodeStreamId) and rendered spec.
   */
  async upsert(input: StreamInput, transcode?: { id: string; spec: TranscodeSpec }): Promise<StreamDefinition> {
    const { config, coordinator } = this.deps;
    const id = transcode?.id ?? streamIdForUrl(input.url);
    const old = await coordinator.getStream(id);
    const def: StreamDefinition = {
      id,
      url: input.url,
      // A resolver's output is a continuous stream, whatever the page URL looks like.
      kind: transcode ? 'transcode' : input.resolver ? 'live' : kindFromUrl(input.url),
      transcode: transcode?.spec ?? null,
      resolver: input.resolver ?? null,
      failoverUrls: input.failoverUrls,
      failoverResolverUrl: input.failoverResolverUrl,
      userAgent: input.userAgent,
      headers: input.headers,
      metadata: input.metadata,
      strictLiveTs: input.strictLiveTs ?? old?.strictLiveTs ?? config.strictLiveTs,
      useStickySession: input.useStickySession ?? old?.useStickySession ?? config.useStickySession,
      options: { ...old?.options, ...input.options },
      createdAt: old?.createdAt ?? new Date().toISOString(),
    };
    const stored = await coordinator.putStream(def);
    // A running source picks up the new failover list, resolver and headers (issue 16).
    if (old) await coordinator.publish({ type: 'stream_updated', streamId: id });
    return stored;
  }

  async get(id: string): Promise<StreamDefinition> {
    const def = await this.deps.coordinator.getStream(id);
    if (!def) throw streamNotFound(id);
    return def;
  }

  find(id: string): Promise<StreamDefinition | null> {
    return this.deps.coordinator.getStream(id);
  }

  /** Deletes a stream everywhere: every worker stops its viewers and source at once. */
  async delete(def: StreamDefinition, reason: StopReason): Promise<void> {
    await this.deps.coordinator.deleteStream(def.id);
    await this.deleted(def, reason);
  }

  /**
   * Deletes a stream only while nobody but `exceptClientId` watches it, checked and deleted in
   * one step in the coordinator (a viewer joining between a check and a delete would be cut).
   * False when it has viewers (or is gone).
   */
  async deleteIfIdle(def: StreamDefinition, reason: StopReason, exceptClientId?: string): Promise<boolean> {
    if ((await this.deps.coordinator.deleteStreamIfIdle(def.id, exceptClientId)) !== 'deleted') return false;
    await this.deleted(def, reason);
    return true;
  }

  private async deleted(def: StreamDefinition, reason: StopReason): Promise<void> {
    const { coordinator } = this.deps;
    const bytes = this.deps.engine.runtime(def.id).bytesServed;
    // The run ends before the viewers are cut, so their departures emit no second stop.
    await this.deps.events.deleted(def, reason, bytes);
    await coordinator.publish({ type: 'stream_deleted', streamId: def.id });
    // Here at once, not when the event comes back: a warm join must not find it playing.
    this.deps.engine.stopStream(def.id);
    this.deps.engine.forget(def.id);
  }

  async snapshot(): Promise<Snapshot> {
    const { coordinator, engine } = this.deps;
    const [defs, records] = await Promise.all([coordinator.listStreams(), coordinator.listClients()]);
    // This worker's own viewers carry live byte counts.
    const local = new Map(engine.localClients().map((c) => [`${c.streamId}:${c.clientId}`, c]));
    const clients = records.map((c) => local.get(`${c.streamId}:${c.clientId}`) ?? c);
    const byStream = new Map<string, ClientRecord[]>();
    for (const c of clients) {
      const list = byStream.get(c.streamId);
      if (list) list.push(c);
      else byStream.set(c.streamId, [c]);
    }
    return { defs, clients, byStream };
  }

  async entry(def: StreamDefinition, snap?: Snapshot): Promise<StreamEntry> {
    const s = snap ?? (await this.snapshot());
    const clients = s.byStream.get(def.id) ?? [];
    const rt = this.deps.engine.runtime(def.id);
    const [status, source] = await Promise.all([
      this.deps.coordinator.getStreamStatus(def.id),
      this.deps.engine.sourceState(def.id), // the owner's figures, whichever worker answers
    ]);
    const running = status?.status === 'running';
    const byWorker: Record<string, number> = {};
    for (const c of clients) byWorker[c.workerId] = (byWorker[c.workerId] ?? 0) + 1;
    return {
      stream_id: def.id,
      original_url: def.url,
      current_url: source?.currentUrl ?? def.url,
      user_agent: def.userAgent ?? this.deps.config.defaultUserAgent,
      stream_type: entryStreamType(def.kind),
      client_count: clients.length,
      is_active: clients.length > 0,
      total_bytes_served: rt.bytesServed,
      total_segments_served: 0,
      error_count: source?.errorCount ?? 0,
      has_failover: def.failoverUrls.length > 0 || def.failoverResolverUrl !== null,
      failover_urls: def.failoverUrls,
      failover_resolver_url: def.failoverResolverUrl,
      current_failover_index: source?.failoverIndex ?? -1,
      failover_attempts: source?.failoverAttempts ?? 0,
      last_failover_time: source?.lastFailoverTime ?? null,
      last_failover_reason: source?.lastFailoverReason ?? null,
      created_at: def.createdAt,
      last_access: latest(rt.lastAccess, ...clients.map((c) => c.lastAccess)) ?? def.createdAt,
      metadata: def.metadata,
      owner: running && status.owner ? { worker_id: status.owner, pid: status.pid } : null,
      source_pid: rt.sourcePid,
      pool_key: this.deps.engine.poolKeyOf(def),
      clients_by_worker: byWorker,
      transcode: rt.transcode,
      ...mediaReport(def.kind, rt),
    };
  }

  async entries(snap?: Snapshot): Promise<StreamEntry[]> {
    const s = snap ?? (await this.snapshot());
    return Promise.all(s.defs.map((d) => this.entry(d, s)));
  }

  async totals(snap?: Snapshot): Promise<Totals> {
    const s = snap ?? (await this.snapshot());
    const streams = await this.entries(s);
    const bytes = streams.reduce((n, e) => n + e.total_bytes_served, 0);
    return {
      total_streams: s.defs.length,
      active_streams: streams.filter((e) => e.is_active).length,
      total_clients: s.clients.length,
      active_clients: s.clients.length,
      total_bytes_served: bytes,
      total_segments_served: 0,
      streams,
      clients: s.clients.map(clientJson),
    };
  }

  /** Streams whose metadata `field` equals `value` (case-insensitive for true/false). */
  async matching(
    field: string,
    value: string,
    activeOnly: boolean,
    snap?: Snapshot,
  ): Promise<Array<{ def: StreamDefinition; clients: ClientRecord[] }>> {
    const s = snap ?? (await this.snapshot());
    return s.defs
      .filter((d) => metadataEquals(d.metadata[field], value))
      .map((def) => ({ def, clients: s.byStream.get(def.id) ?? [] }))
      .filter((m) => !activeOnly || m.clients.length > 0);
  }
}

export function metadataEquals(stored: string | undefined, wanted: string): boolean {
  if (stored === undefined) return false;
  const bool = /^(true|false)$/i;
  return bool.test(stored) && bool.test(wanted) ? stored.toLowerCase() === wanted.toLowerCase() : stored === wanted;
}

export function clientJson(c: ClientRecord): ClientJson {
  return {
    client_id: c.clientId,
    stream_id: c.streamId,
    ip_address: c.ipAddress,
    username: c.username,
    user_agent: c.userAgent,
    bytes_served: c.bytesServed,
    segments_served: c.segmentsServed,
    created_at: c.connectedAt,
    last_access: c.lastAccess,
    is_connected: true,
    worker_id: c.workerId,
  };
}

function latest(...isos: Array<string | null>): string | null {
  let best: string | null = null;
  for (const t of isos) if (t && (!best || t > best)) best = t;
  return best;
}
