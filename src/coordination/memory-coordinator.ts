// The coordinator held in one process's memory, with the same semantics as Redis (TTLs
// included, checked lazily against the clock). A single worker uses it directly; the
// cluster primary serves it to its workers over IPC.
import { randomBytes } from 'node:crypto';
import type {
  ClientRecord,
  Coordinator,
  CoordinatorEvent,
  Lease,
  SetValueOptions,
  StreamStatus,
  WebhookRegistration,
  WorkerRecord,
} from './coordinator.js';
import type { StreamDefinition } from '../streams/stream-definition.js';

interface Expiring<T> {
  value: T;
  expiresAt: number;
}

export class MemoryCoordinator implements Coordinator {
  readonly backend: Coordinator['backend'] = 'memory';
  private readonly streams = new Map<string, StreamDefinition>();
  private readonly statuses = new Map<string, StreamStatus>();
  private readonly leases = new Map<string, Expiring<string>>();
  private readonly epochs = new Map<string, number>();
  private readonly clients = new Map<string, Expiring<ClientRecord>>();
  private readonly values = new Map<string, string>();
  private readonly kv = new Map<string, Expiring<string>>();
  private readonly webhooks = new Map<string, WebhookRegistration>();
  private readonly workers = new Map<string, WorkerRecord>();
  private readonly handlers = new Set<(event: CoordinatorEvent) => void>();

  constructor(private readonly now: () => number = Date.now) {}

  async putStream(def: StreamDefinition): Promise<StreamDefinition> {
    const old = this.streams.get(def.id);
    const stored = old ? { ...def, createdAt: old.createdAt } : { ...def };
    this.streams.set(def.id, stored);
    return stored;
  }

  async getStream(id: string): Promise<StreamDefinition | null> {
    return this.streams.get(id) ?? null;
  }

  async listStreams(): Promise<StreamDefinition[]> {
    return [...this.streams.values()];
  }

  async deleteStream(id: string): Promise<boolean> {
    this.statuses.delete(id);
    return this.streams.delete(id);
  }

  async deleteStreamIfIdle(id: string, exceptClientId?: string): Promise<'deleted' | 'busy' | 'absent'> {
    if (!this.streams.has(id)) return 'absent';
    for (const key of [...this.clients.keys()]) {
      const c = this.live(this.clients, key)?.value;
      if (c && c.streamId === id && c.clientId !== exceptClientId) return 'busy';
    }
    await this.deleteStream(id);
    return 'deleted';
  }

  async setStreamStatus(id: string, status: StreamStatus): Promise<boolean> {
    const old = this.statuses.get(id);
    if (old && old.epoch > status.epoch) return false;
    this.statuses.set(id, { ...status });
    return true;
  }

  async getStreamStatus(id: string): Promise<StreamStatus | null> {
    return this.statuses.get(id) ?? null;
  }

  async acquireLease(key: string, holder: string, ttlMs: number, ephemeral = false): Promise<Lease | null> {
    if (this.live(this.leases, key)) return null;
    const token = `${holder}:${randomBytes(8).toString('hex')}`;
    const epoch = ephemeral ? 1 : (this.epochs.get(key) ?? 0) + 1;
    if (!ephemeral) this.epochs.set(key, epoch);
    this.leases.set(key, { value: token, expiresAt: this.now() + ttlMs });
    return { key, token, epoch };
  }

  async renewLease(lease: Lease, ttlMs: number): Promise<boolean> {
    const held = this.live(this.leases, lease.key);
    if (held?.value !== lease.token) return false;
    held.expiresAt = this.now() + ttlMs;
    return true;
  }

  async releaseLease(lease: Lease): Promise<boolean> {
    if (this.live(this.leases, lease.key)?.value !== lease.token) return false;
    return this.leases.delete(lease.key);
  }

  async leaseHolder(key: string): Promise<string | null> {
    return this.live(this.leases, key)?.value ?? null;
  }

  async releaseLeasesHeldBy(holder: string): Promise<number> {
    let n = 0;
    for (const [key, lease] of [...this.leases]) {
      if (lease.value.startsWith(`${holder}:`) && this.leases.delete(key)) n++;
    }
    return n;
  }

  async putWorker(worker: WorkerRecord): Promise<void> {
    this.workers.set(worker.workerId, structuredClone(worker));
  }

  async listWorkers(): Promise<WorkerRecord[]> {
    return [...this.workers.values()];
  }

  async removeWorker(workerId: string): Promise<void> {
    this.workers.delete(workerId);
  }

  async putClient(client: ClientRecord, ttlMs: number, onlyIfAbsent = false): Promise<boolean> {
    const key = `${client.streamId}:${client.clientId}`;
    if (onlyIfAbsent && this.live(this.clients, key)) return false;
    this.clients.set(key, { value: { ...client }, expiresAt: this.now() + ttlMs });
    return true;
  }

  async deleteClient(streamId: string, clientId: string): Promise<void> {
    this.clients.delete(`${streamId}:${clientId}`);
  }

  async listClients(streamId?: string): Promise<ClientRecord[]> {
    const out: ClientRecord[] = [];
    for (const key of [...this.clients.keys()]) {
      const c = this.live(this.clients, key);
      if (c && (!streamId || c.value.streamId === streamId)) out.push(c.value);
    }
    return out;
  }

  async hasClients(streamId: string): Promise<boolean> {
    // No copy of the key set: this runs once per departure (deleting an expired entry while
    // iterating a Map is safe).
    const prefix = `${streamId}:`;
    for (const key of this.clients.keys()) {
      if (!key.startsWith(prefix)) continue;
      if (this.live(this.clients, key)?.value.streamId === streamId) return true;
    }
    return false;
  }

  async getOrSetValue(name: string, create: () => string): Promise<string> {
    let v = this.values.get(name);
    if (v === undefined) {
      v = create();
      this.values.set(name, v);
    }
    return v;
  }

  async setValue(name: string, value: string, opts?: SetValueOptions | null): Promise<boolean> {
    // `null` too: an absent argument arrives as null over IPC.
    if (opts?.onlyIfAbsent && this.live(this.kv, name)) return false;
    this.kv.set(name, { value, expiresAt: opts?.ttlMs ? this.now() + opts.ttlMs : Infinity });
    return true;
  }

  async getValue(name: string): Promise<string | null> {
    return this.live(this.kv, name)?.value ?? null;
  }

  async deleteValue(name: string): Promise<boolean> {
    return this.live(this.kv, name) !== undefined && this.kv.delete(name);
  }

  async putWebhook(hook: WebhookRegistration): Promise<void> {
    this.webhooks.set(hook.url, structuredClone(hook));
  }

  async deleteWebhook(url: string): Promise<boolean> {
    return this.webhooks.delete(url);
  }

  async listWebhooks(): Promise<WebhookRegistration[]> {
    return [...this.webhooks.values()]
      .map((h) => structuredClone(h))
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.url.localeCompare(b.url));
  }

  async publish(event: CoordinatorEvent): Promise<void> {
    for (const h of this.handlers) h(event);
  }

  subscribe(handler: (event: CoordinatorEvent) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  async ping(): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {
    this.handlers.clear();
  }

  private live<T>(map: Map<string, Expiring<T>>, key: string): Expiring<T> | undefined {
    const e = map.get(key);
    if (e && e.expiresAt <= this.now()) {
      map.delete(key);
      return undefined;
    }
    return e;
  }
}
