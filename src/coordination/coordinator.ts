// The coordinator: everything workers (and hosts) must agree on. One interface, several
// backends: in-process memory (one worker), embedded in the cluster primary, Redis.
import type { StreamDefinition } from '../streams/stream-definition.js';

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
}

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

  /** Writes status unless a newer epoch already wrote; returns whether it was written. */
  setStreamStatus(id: string, status: StreamStatus): Promise<boolean>;
  getStreamStatus(id: string): Promise<StreamStatus | null>;

  acquireLease(key: string, holder: string, ttlMs: number): Promise<Lease | null>;
  renewLease(lease: Lease, ttlMs: number): Promise<boolean>;
  releaseLease(lease: Lease): Promise<boolean>;
  leaseHolder(key: string): Promise<string | null>;

  putClient(client: ClientRecord, ttlMs: number): Promise<void>;
  deleteClient(streamId: string, clientId: string): Promise<void>;
  listClients(streamId?: string): Promise<ClientRecord[]>;

  /** A cluster-wide value set once (e.g. the URL signing secret). */
  getOrSetValue(name: string, create: () => string): Promise<string>;

  publish(event: CoordinatorEvent): Promise<void>;
  subscribe(handler: (event: CoordinatorEvent) => void): () => void;

  ping(): Promise<boolean>;
  close(): Promise<void>;
}
