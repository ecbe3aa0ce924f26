// The worker's side of the embedded coordinator: every call goes to the primary over
// cluster IPC; events come back from it. Same interface, same semantics as the others.
import { randomInt } from 'node:crypto';
import type {
  ClientRecord, Coordinator, CoordinatorEvent, Lease, SetValueOptions, StreamStatus, WebhookRegistration, WorkerRecord,
} from './coordinator.js';
import { CoordinatorUnavailableError } from './coordinator.js';
import { ABSENT, isIpcMessage, type IpcCall } from './ipc-protocol.js';
import type { StreamDefinition } from '../streams/stream-definition.js';

interface Channel {
  send(message: unknown): boolean;
  on(event: 'message', listener: (m: unknown) => void): unknown;
  off(event: 'message', listener: (m: unknown) => void): unknown;
  readonly connected?: boolean;
}

const CALL_TIMEOUT_MS = 5000;

export class IpcCoordinator implements Coordinator {
  readonly backend: Coordinator['backend'] = 'embedded';
  // Random start: several coordinators may share one channel (tests, a future in-worker pool).
  private nextId = randomInt(1, 2 ** 47);
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private readonly handlers = new Set<(event: CoordinatorEvent) => void>();

  constructor(private readonly channel: Channel = process as unknown as Channel) {
    channel.on('message', this.onMessage);
  }

  putStream(def: StreamDefinition) { return this.call<StreamDefinition>('putStream', def); }
  getStream(id: string) { return this.call<StreamDefinition | null>('getStream', id); }
  listStreams() { return this.call<StreamDefinition[]>('listStreams'); }
  deleteStream(id: string) { return this.call<boolean>('deleteStream', id); }
  deleteStreamIfIdle(id: string, exceptClientId?: string) { return this.call<'deleted' | 'busy' | 'absent'>('deleteStreamIfIdle', id, exceptClientId); }
  setStreamStatus(id: string, status: StreamStatus) { return this.call<boolean>('setStreamStatus', id, status); }
  getStreamStatus(id: string) { return this.call<StreamStatus | null>('getStreamStatus', id); }
  acquireLease(key: string, holder: string, ttlMs: number, ephemeral = false) { return this.call<Lease | null>('acquireLease', key, holder, ttlMs, ephemeral); }
  renewLease(lease: Lease, ttlMs: number) { return this.call<boolean>('renewLease', lease, ttlMs); }
  releaseLease(lease: Lease) { return this.call<boolean>('releaseLease', lease); }
  leaseHolder(key: string) { return this.call<string | null>('leaseHolder', key); }
  releaseLeasesHeldBy(holder: string) { return this.call<number>('releaseLeasesHeldBy', holder); }
  putClient(client: ClientRecord, ttlMs: number, onlyIfAbsent = false) { return this.call<boolean>('putClient', client, ttlMs, onlyIfAbsent); }
  deleteClient(streamId: string, clientId: string) { return this.call<void>('deleteClient', streamId, clientId); }
  listClients(streamId?: string) { return this.call<ClientRecord[]>('listClients', streamId); }
  hasClients(streamId: string) { return this.call<boolean>('hasClients', streamId); }
  putWorker(worker: WorkerRecord) { return this.call<void>('putWorker', worker); }
  listWorkers() { return this.call<WorkerRecord[]>('listWorkers'); }
  removeWorker(workerId: string) { return this.call<void>('removeWorker', workerId); }
  publish(event: CoordinatorEvent) { return this.call<void>('publish', event); }
  setValue(name: string, value: string, opts?: SetValueOptions) { return this.call<boolean>('setValue', name, value, opts); }
  getValue(name: string) { return this.call<string | null>('getValue', name); }
  deleteValue(name: string) { return this.call<boolean>('deleteValue', name); }
  putWebhook(hook: WebhookRegistration) { return this.call<void>('putWebhook', hook); }
  deleteWebhook(url: string) { return this.call<boolean>('deleteWebhook', url); }
  listWebhooks() { return this.call<WebhookRegistration[]>('listWebhooks'); }

  async getOrSetValue(name: string, create: () => string): Promise<string> {
    try {
      return await this.call<string>('getOrSetValue', name, null);
    } catch (err) {
      if (!(err instanceof Error) || err.message !== ABSENT) throw err;
      return this.call<string>('getOrSetValue', name, create());
    }
  }

  async ping(): Promise<boolean> {
    return this.call<boolean>('ping').catch(() => false);
  }

  subscribe(handler: (event: CoordinatorEvent) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  async close(): Promise<void> {
    this.channel.off('message', this.onMessage);
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new CoordinatorUnavailableError('The coordinator connection is closed'));
    }
    this.pending.clear();
    this.handlers.clear();
  }

  private call<T>(method: string, ...args: unknown[]): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const id = this.nextId++;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new CoordinatorUnavailableError(`The primary did not answer ${method} in time`));
      }, CALL_TIMEOUT_MS);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      const msg: IpcCall = { t: 'coord:call', id, method, args };
      try {
        this.channel.send(msg);
      } catch {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new CoordinatorUnavailableError('The primary is gone'));
      }
    });
  }

  private readonly onMessage = (msg: unknown): void => {
    if (!isIpcMessage(msg)) return;
    if (msg.t === 'coord:event') {
      for (const h of this.handlers) h(msg.event);
      return;
    }
    if (msg.t !== 'coord:reply') return;
    const p = this.pending.get(msg.id);
    if (!p) return;
    this.pending.delete(msg.id);
    clearTimeout(p.timer);
    if (msg.ok) p.resolve(msg.value ?? null);
    else p.reject(new Error(msg.error ?? 'coordinator call failed'));
  };
}
