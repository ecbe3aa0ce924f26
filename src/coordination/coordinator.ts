// The coordinator: everything workers (and hosts) must agree on. One interface, several
// backends: in-process memory (one worker), embedded in the cluster primary, Redis.
import type { StreamDefinition } from '../streams/stream-definition.js';

/** The worker id inside a lease token (`{holder}:{random}`, Coordinator.leaseHolder). */
export function holderWorkerId(token: string): string {
  return token.slice(0, token.lastIndexOf(':'));
}

export interface Lease {
  key: string;
  /** `{holder}:{random}`: what the lease key holds while this lease owns it. */
  token: string;
  /** Fencing number: increases on every acquisition of the key. */
  epoch: number;
}

/** Live state of a stream's source, written by its owner (fenced by the lease epoch). */
export interface StreamStatus {
  status: 'starting' | 'running' | 'reconnecting' | 'stopped' | 'failed';
  owner: string | null;
  pid: number | null;
  epoch: number;
  updatedAt: string;
}

export interface ClientRecord {
  clientId: string;
  streamId: string;
  ipAddress: string;
  userAgent: string;
  username: string | null;
  workerId: string;
  connectedAt: string;
  lastAccess: string;
  bytesServed: number;
  segmentsServed: number;
  /** The source (`{pool_key}:{slot}`) feeding this viewer, for transcode slot counting. */
  source?: string | null;
}

/** A worker's heartbeat record (hash `workers`, field = worker id). */
export interface WorkerRecord {
  workerId: string;
  pid: number;
  host: string;
  startedAt: string;
  lastSeen: string;
  /** `{pool_key}:{slot}` of every source this worker owns. */
  sources: string[];
  viewers: number;
  /** Where other workers open relay connections: `host:port`. */
  relay: string | null;
  relays: { receiving: number; serving: number };
  /** Details of the sources it owns, as of its last heartbeat (for /stats/pooled). */
  sourceDetails?: SourceDetail[];
}

export interface SourceDetail {
  key: string;
  streamId: string;
  clients: number;
  pid: number | null;
  startedAt: string;
  fps: number | null;
  speed: number | null;
}

/** Thrown by a backend that cannot reach its store (Redis down): a 503, never a 500. */
export class CoordinatorUnavailableError extends Error {
  constructor(message = 'The coordinator is unreachable') {
    super(message);
    this.name = 'CoordinatorUnavailableError';
  }
}

/** A webhook registration (API.md §5.1), cluster-wide, keyed by its URL. */
export interface WebhookRegistration {
  url: string;
  /** Event types it wants; empty = every type. */
  events: string[];
  headers: Record<string, string>;
  /** Seconds per POST. */
  timeout: number;
  /** POSTs after the first one on an error or a status >= 400. */
  retryAttempts: number;
  createdAt: string;
}

/** Options of `setValue`. */
export interface SetValueOptions {
  /** Lifetime in ms; absent = until deleted. */
  ttlMs?: number;
  /** Write only when no live value exists (SET NX); the result says whether it was written. */
  onlyIfAbsent?: boolean;
}

export type ResetReason = 'store_lost' | 'forgotten';

export interface CoordinatorEvent {
  type: string;
  streamId?: string;
  data?: Record<string, unknown>;
}

export interface Coordinator {
  readonly backend: 'memory' | 'embedded' | 'redis';

  /** Upserts a definition; `createdAt` of an existing one is kept. Returns what is stored. */
  putStream(def: StreamDefinition): Promise<StreamDefinition>;
  getStream(id: string): Promise<StreamDefinition | null>;
  listStreams(): Promise<StreamDefinition[]>;
  deleteStream(id: string): Promise<boolean>;
  /**
   * Check-and-delete in one step: deletes the stream only while it has no live client record
   * other than `exceptClientId` (a viewer joining meanwhile either counts, or joins a stream
   * already deleted). `DELETE /streams/by-metadata?force=false`.
   */
  deleteStreamIfIdle(id: string, exceptClientId?: string): Promise<'deleted' | 'busy' | 'absent'>;

  /** Writes status unless a newer epoch already wrote; returns whether it was written. */
  setStreamStatus(id: string, status: StreamStatus): Promise<boolean>;
  getStreamStatus(id: string): Promise<StreamStatus | null>;

  /**
   * `SET key holder:random NX PX ttl` and `INCR key:epoch`; null when someone holds it.
   * `ephemeral`: a key used once (one viewer's own FFmpeg): no fencing counter is kept, the
   * epoch is always 1, so nothing of the lease is left once it is released or expired.
   */
  acquireLease(key: string, holder: string, ttlMs: number, ephemeral?: boolean): Promise<Lease | null>;
  /** Compare-and-pexpire: false when the key is gone or held by another token. */
  renewLease(lease: Lease, ttlMs: number): Promise<boolean>;
  /** Compare-and-delete. */
  releaseLease(lease: Lease): Promise<boolean>;
  /** The token (`{holder}:{random}`) that holds the key, or null. */
  leaseHolder(key: string): Promise<string | null>;
  /** Deletes every lease whose token belongs to `holder` (a dead worker); returns the count. */
  releaseLeasesHeldBy(holder: string): Promise<number>;

  /** Writes a client record with a TTL; with `onlyIfAbsent`, only when none exists (false then). */
  putClient(client: ClientRecord, ttlMs: number, onlyIfAbsent?: boolean): Promise<boolean>;
  deleteClient(streamId: string, clientId: string): Promise<void>;
  listClients(streamId?: string): Promise<ClientRecord[]>;
  /**
   * Whether the stream has at least one live client record. Answers a departure's "was that
   * the last viewer?" without listing the others: listing them on every departure made a
   * crowd leaving cost N² records over IPC (BENCHMARKS.md, issue 19).
   */
  hasClients(streamId: string): Promise<boolean>;

  /** Heartbeat: writes the record into the `workers` hash. */
  putWorker(worker: WorkerRecord): Promise<void>;
  listWorkers(): Promise<WorkerRecord[]>;
  removeWorker(workerId: string): Promise<void>;

  /** A cluster-wide value set once (e.g. the URL signing secret). */
  getOrSetValue(name: string, create: () => string): Promise<string>;

  /** A named cluster-wide value with an optional TTL (SET [NX] [PX]); false when NX refused. */
  setValue(name: string, value: string, opts?: SetValueOptions): Promise<boolean>;
  getValue(name: string): Promise<string | null>;
  /** Deletes a value; true only for the one caller that removed a live value (DEL = 1). */
  deleteValue(name: string): Promise<boolean>;

  /** Webhook registrations: a put replaces the one with the same URL. */
  putWebhook(hook: WebhookRegistration): Promise<void>;
  deleteWebhook(url: string): Promise<boolean>;
  listWebhooks(): Promise<WebhookRegistration[]>;

  publish(event: CoordinatorEvent): Promise<void>;
  subscribe(handler: (event: CoordinatorEvent) => void): () => void;

  /**
   * Called when the store is found to have lost what this process wrote: `store_lost` (Redis
   * came back empty: its run marker vanished or changed) or `forgotten` (this process's
   * worker record had vanished, e.g. swept while it was cut off). Backends whose store lives
   * as long as the workers (memory, embedded) never call it.
   */
  onReset?(handler: (reason: ResetReason) => void): () => void;

  ping(): Promise<boolean>;
  close(): Promise<void>;
}
