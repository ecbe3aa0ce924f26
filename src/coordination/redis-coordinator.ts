// The coordinator in Redis: what every worker on every host agrees on. Keys (all under the
// raw `keyPrefix`, built here rather than by ioredis so Lua KEYS are exact):
//   stream:{id}                 hash: definition (JSON), url, kind, created_at, client_count,
//                               and the fenced status: status, owner, pid, epoch, updated_at
//   client:{streamId}:{client}  hash per viewer, with a TTL
//   workers                     hash: worker id -> JSON heartbeat record (snake_case)
//   {leaseKey}, {leaseKey}:epoch  lease token (PX ttl) and its fencing counter
//   {name}                      values set once (getOrSetValue)
//   value:{name}                named values with an optional TTL (setValue, SET NX PX)
//   webhooks                    hash: webhook URL -> JSON registration (survives restarts)
//   events                      pub/sub channel of JSON CoordinatorEvents
// While Redis is unreachable every call fails fast with CoordinatorUnavailableError (the
// command connection has no offline queue) and both connections reconnect by themselves.
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis, type ChainableCommander, type RedisOptions } from 'ioredis';
import {
  CoordinatorUnavailableError,
  type ClientRecord,
  type Coordinator,
  type CoordinatorEvent,
  type Lease,
  type ResetReason,
  type SetValueOptions,
  type SourceDetail,
  type StreamStatus,
  type WebhookRegistration,
  type WorkerRecord,
} from './coordinator.js';
import type { StreamDefinition } from '../streams/stream-definition.js';

export interface RedisCoordinatorLogger {
  warn(msg: string, meta?: object): void;
  info?(msg: string, meta?: object): void;
}

export interface RedisCoordinatorOptions {
  /** `redis://[:password@]host:port/db`; a password here counts as configured. */
  url: string;
  /** Raw prefix of every key and of the events channel (e.g. `m3u:`). */
  keyPrefix?: string;
  /** REDIS_PASSWORD; overrides one in the URL. */
  password?: string;
  /** Tried when no password is configured and Redis answers NOAUTH (API_TOKEN). */
  fallbackPassword?: string;
  logger?: RedisCoordinatorLogger;
  /** How long a call may wait for a connection being opened; also the socket connect timeout. */
  connectTimeoutMs?: number;
}

const SCRIPT_NAMES = [
  'acquire-lease',
  'renew-lease',
  'release-lease',
  'set-status',
  'put-stream',
  'put-client',
  'delete-client',
  'set-client-count',
  'delete-stream-if-idle',
] as const;
type ScriptName = (typeof SCRIPT_NAMES)[number];
type ScriptArg = string | number;

interface LuaScript {
  name: string;
  numberOfKeys: number;
  lua: string;
}

/** Server replies that mean "not usable right now" rather than a bug in a command. */
const UNAVAILABLE_REPLY = /^(NOAUTH|WRONGPASS|LOADING|MASTERDOWN|READONLY|BUSY|TRYAGAIN|CLUSTERDOWN)\b/;
const STATUSES: ReadonlySet<string> = new Set<StreamStatus['status']>([
  'starting',
  'running',
  'reconnecting',
  'stopped',
  'failed',
]);
const SCAN_COUNT = 200;

/** The JSON stored per worker in the `workers` hash: snake_case, for redis-cli readers. */
interface StoredWorker {
  worker_id: string;
  pid: number;
  host: string;
  started_at: string;
  last_seen: string;
  sources: string[];
  viewers: number;
  relay: string | null;
  relays: { receiving: number; serving: number };
  source_details?: SourceDetail[];
}

export class RedisCoordinator implements Coordinator {
  readonly backend = 'redis' as const;
  private readonly prefix: string;
  private readonly channel: string;
  private readonly cmd: Redis;
  private readonly sub: Redis;
  private readonly logger: RedisCoordinatorLogger | undefined;
  private readonly fallbackPassword: string | undefined;
  private readonly secrets: string[];
  private readonly connectTimeoutMs: number;
  private readonly handlers = new Set<(event: CoordinatorEvent) => void>();
  private readonly resetHandlers = new Set<(reason: ResetReason) => void>();
  /** The run marker as this process last saw it (null before the first connection). */
  private runId: string | null = null;
  /** Worker ids whose record this process wrote: a record found missing again was lost. */
  private readonly workersPut = new Set<string>();
  private closed = false;
  /** Redis is known unreachable: calls fail at once instead of waiting for a connection. */
  private down = false;
  /** The command connection closes to re-authenticate: not an outage. */
  private reauthenticating = false;
  private lastError = '';
  private connecting: Promise<void> | null = null;
  private subscribed = false;
  private readonly subscription: Promise<void>;
  private markSubscribed: () => void = () => {};

  constructor(opts: RedisCoordinatorOptions) {
    this.prefix = opts.keyPrefix ?? '';
    this.channel = `${this.prefix}events`;
    this.logger = opts.logger;
    this.fallbackPassword = opts.fallbackPassword;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 1500;
    this.secrets = secretsOf(opts);
    this.subscription = new Promise((resolve) => (this.markSubscribed = resolve));

    const common: RedisOptions = {
      connectTimeout: this.connectTimeoutMs,
      // Never give up: Redis coming back must heal every worker without a restart.
      retryStrategy: (times) => Math.min(times * 200, 2000),
      ...(opts.password !== undefined ? { password: opts.password } : {}),
    };
    this.cmd = new Redis(opts.url, {
      ...common,
      connectionName: 'm3u-proxy',
      // Fail fast while disconnected: a queued call would hang a request for the outage.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: 2000,
    });
    this.sub = new Redis(opts.url, {
      ...common,
      connectionName: 'm3u-proxy:events',
      // ioredis re-subscribes the channel on every reconnect by itself.
      autoResubscribe: true,
    });

    for (const s of loadScripts()) {
      this.cmd.defineCommand(s.name, { numberOfKeys: s.numberOfKeys, lua: s.lua });
    }

    this.cmd.on('error', (err: Error) => this.onConnectionError(this.cmd, err));
    this.sub.on('error', (err: Error) => this.onConnectionError(this.sub, err));
    this.cmd.on('ready', () => {
      if (this.down) this.logger?.info?.('Redis coordinator reachable again');
      this.down = false;
      this.lastError = '';
      void this.checkRun();
    });
    this.cmd.on('close', () => {
      if (this.reauthenticating) {
        this.reauthenticating = false;
        return;
      }
      if (this.closed || this.down) return;
      this.lastError ||= 'connection closed'; // a killed server closes without an error
      this.down = true;
      this.logger?.warn('Redis coordinator unreachable; calls fail until it is back', {
        error: this.lastError,
      });
    });
    // The first SUBSCRIBE is sent once connected (it fails under NOAUTH before a fallback
    // password is in place, hence on every 'ready' until it succeeds); later reconnects are
    // re-subscribed by ioredis.
    this.sub.on('ready', () => {
      if (this.subscribed) return;
      this.sub.subscribe(this.channel).then(
        () => {
          this.subscribed = true;
          this.markSubscribed();
        },
        () => {}, // the next 'ready' tries again
      );
    });
    this.sub.on('message', (channel: string, message: string) => {
      if (channel === this.channel) this.dispatch(message);
    });
  }

  /** Resolves once commands can be sent and the events channel is subscribed. */
  async ready(timeoutMs = 5000): Promise<void> {
    await this.run(async () => {});
    await withTimeout(this.subscription, timeoutMs, 'Redis events subscription not ready');
  }

  // --- streams ---------------------------------------------------------------------------

  async putStream(def: StreamDefinition): Promise<StreamDefinition> {
    return this.run(async () => {
      let stored: StreamDefinition = { ...def };
      // The script refuses a createdAt other than the stored one and returns it; a retry
      // carries it. More than one refusal means the stream was deleted and re-created meanwhile.
      for (let attempt = 0; attempt < 3; attempt++) {
        const kept = await this.script('put-stream', [this.streamKey(def.id)], [
          stored.createdAt,
          JSON.stringify(stored),
          stored.url,
          stored.kind,
        ]);
        if (typeof kept !== 'string') return stored;
        stored = { ...def, createdAt: kept };
      }
      throw new Error(`putStream ${def.id}: the stored createdAt kept changing`);
    });
  }

  async getStream(id: string): Promise<StreamDefinition | null> {
    const raw = await this.run(() => this.cmd.hget(this.streamKey(id), 'definition'));
    return raw === null ? null : this.parseDefinition(raw);
  }

  async listStreams(): Promise<StreamDefinition[]> {
    return this.run(async () => {
      const keys = await this.scanKeys(`${globEscape(this.prefix)}stream:*`);
      if (keys.length === 0) return [];
      const p = this.cmd.pipeline();
      for (const k of keys) p.hget(k, 'definition');
      const out: StreamDefinition[] = [];
      for (const raw of await execPipeline(p)) {
        // A hash with only a status (or deleted meanwhile) is no stream.
        const def = typeof raw === 'string' ? this.parseDefinition(raw) : null;
        if (def) out.push(def);
      }
      return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
    });
  }

  async deleteStream(id: string): Promise<boolean> {
    return this.run(async () => {
      const key = this.streamKey(id);
      const [existed] = await execPipeline(this.cmd.multi().hexists(key, 'definition').del(key));
      return existed === 1;
    });
  }

  async deleteStreamIfIdle(id: string, exceptClientId?: string): Promise<'deleted' | 'busy' | 'absent'> {
    return this.run(async () => {
      // The listing rewrites the advisory client_count (expired records no longer count);
      // from then on put-client and delete-client move it atomically, and the script reads
      // it and deletes in one step.
      const clients = await this.listClients(id);
      const allowed = exceptClientId && clients.some((c) => c.clientId === exceptClientId) ? 1 : 0;
      const r = await this.script('delete-stream-if-idle', [this.streamKey(id)], [allowed]);
      return r === 1 ? 'deleted' : r === 0 ? 'busy' : 'absent';
    });
  }

  async setStreamStatus(id: string, status: StreamStatus): Promise<boolean> {
    const written = await this.run(() =>
      this.script('set-status', [this.streamKey(id)], [
        status.epoch,
        status.status,
        status.owner ?? '',
        status.pid ?? '',
        status.updatedAt,
      ]),
    );
    return written === 1;
  }

  async getStreamStatus(id: string): Promise<StreamStatus | null> {
    const [status, owner, pid, epoch, updatedAt] = await this.run(() =>
      this.cmd.hmget(this.streamKey(id), 'status', 'owner', 'pid', 'epoch', 'updated_at'),
    );
    if (status == null || !STATUSES.has(status)) return null;
    return {
      status: status as StreamStatus['status'],
      owner: owner ?? null,
      pid: pid == null ? null : Number(pid),
      epoch: Number(epoch ?? 0),
      updatedAt: updatedAt ?? '',
    };
  }

  // --- leases ----------------------------------------------------------------------------

  async acquireLease(key: string, holder: string, ttlMs: number, ephemeral = false): Promise<Lease | null> {
    const token = `${holder}:${randomBytes(8).toString('hex')}`;
    const epoch = await this.run(() =>
      this.script('acquire-lease', [this.leaseKey(key), `${this.leaseKey(key)}:epoch`], [
        token,
        positiveMs(ttlMs),
        ephemeral ? '1' : '0',
      ]),
    );
    return typeof epoch === 'number' && epoch > 0 ? { key, token, epoch } : null;
  }

  async renewLease(lease: Lease, ttlMs: number): Promise<boolean> {
    const ok = await this.run(() =>
      this.script('renew-lease', [this.leaseKey(lease.key)], [lease.token, positiveMs(ttlMs)]),
    );
    return ok === 1;
  }

  async releaseLease(lease: Lease): Promise<boolean> {
    const ok = await this.run(() =>
      this.script('release-lease', [this.leaseKey(lease.key)], [lease.token]),
    );
    return ok === 1;
  }

  async leaseHolder(key: string): Promise<string | null> {
    return this.run(() => this.cmd.get(this.leaseKey(key)));
  }

  /** Lease keys are expected to start with `lease:` (only those are scanned). */
  async releaseLeasesHeldBy(holder: string): Promise<number> {
    return this.run(async () => {
      const keys = (await this.scanKeys(`${globEscape(this.prefix)}lease:*`)).filter(
        (k) => !k.endsWith(':epoch'),
      );
      if (keys.length === 0) return 0;
      const read = this.cmd.pipeline();
      for (const k of keys) read.get(k);
      const tokens = await execPipeline(read);
      const release = this.cmd.pipeline();
      let queued = 0;
      keys.forEach((k, i) => {
        const token = tokens[i];
        if (typeof token === 'string' && token.startsWith(`${holder}:`)) {
          // Compare-and-delete: a lease renewed by a new holder since the read stays.
          queueScript(release, 'release-lease', [k], [token]);
          queued++;
        }
      });
      if (queued === 0) return 0;
      return (await execPipeline(release)).filter((r) => r === 1).length;
    });
  }

  // --- clients ---------------------------------------------------------------------------

  async putClient(client: ClientRecord, ttlMs: number, onlyIfAbsent = false): Promise<boolean> {
    const fields: Record<string, ScriptArg> = {
      client_id: client.clientId,
      stream_id: client.streamId,
      ip_address: client.ipAddress,
      user_agent: client.userAgent,
      worker_id: client.workerId,
      connected_at: client.connectedAt,
      last_access: client.lastAccess,
      bytes_served: client.bytesServed,
      segments_served: client.segmentsServed,
    };
    if (client.username !== null) fields.username = client.username; // null: no field
    if (client.source) fields.source = client.source;
    const written = await this.run(() =>
      this.script(
        'put-client',
        [this.clientKey(client.streamId, client.clientId), this.streamKey(client.streamId)],
        [positiveMs(ttlMs), onlyIfAbsent ? '1' : '0', ...Object.entries(fields).flat()],
      ),
    );
    return written === 1;
  }

  async deleteClient(streamId: string, clientId: string): Promise<void> {
    await this.run(() =>
      this.script('delete-client', [this.clientKey(streamId, clientId), this.streamKey(streamId)], []),
    );
  }

  async listClients(streamId?: string): Promise<ClientRecord[]> {
    return this.run(async () => {
      // Like the memory backend, an empty id means every stream.
      const stream = streamId ? globEscape(streamId) : '*';
      const keys = await this.scanKeys(`${globEscape(this.prefix)}client:${stream}:*`);
      const out: ClientRecord[] = [];
      if (keys.length > 0) {
        const p = this.cmd.pipeline();
        for (const k of keys) p.hgetall(k);
        for (const h of await execPipeline(p)) {
          const c = isStringRecord(h) ? toClientRecord(h) : null;
          if (c && (!streamId || c.streamId === streamId)) out.push(c);
        }
      }
      await this.correctClientCounts(out, streamId);
      return out;
    });
  }

  async hasClients(streamId: string): Promise<boolean> {
    return this.run(async () => {
      // SCAN until the first record of this stream: no record is read but that one (the last
      // viewer's departure still scans the whole keyspace, as listing did).
      const pattern = `${globEscape(this.prefix)}client:${globEscape(streamId)}:*`;
      let cursor = '0';
      do {
        const [next, keys] = await this.cmd.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT);
        cursor = next;
        for (const k of keys) {
          // Gone between SCAN and HGET (expired, deleted): not a viewer.
          if ((await this.cmd.hget(k, 'stream_id')) === streamId) return true;
        }
      } while (cursor !== '0');
      return false;
    });
  }

  // --- workers ---------------------------------------------------------------------------

  async putWorker(worker: WorkerRecord): Promise<void> {
    const stored: StoredWorker = {
      worker_id: worker.workerId,
      pid: worker.pid,
      host: worker.host,
      started_at: worker.startedAt,
      last_seen: worker.lastSeen,
      sources: worker.sources,
      viewers: worker.viewers,
      relay: worker.relay,
      relays: { receiving: worker.relays.receiving, serving: worker.relays.serving },
      ...(worker.sourceDetails ? { source_details: worker.sourceDetails } : {}),
    };
    const added = await this.run(() => this.cmd.hset(this.workersKey(), worker.workerId, JSON.stringify(stored)));
    // Our record was there before and is new again: the store forgot us (swept, or emptied).
    if (added === 1 && this.workersPut.has(worker.workerId)) this.fireReset('forgotten');
    this.workersPut.add(worker.workerId);
  }

  onReset(handler: (reason: ResetReason) => void): () => void {
    this.resetHandlers.add(handler);
    return () => this.resetHandlers.delete(handler);
  }

  /**
   * Reads the run marker (`run_id`, created once per store): missing or another value than
   * the one seen before means Redis restarted without its data. Runs on every (re)connect;
   * true when a reset was found.
   */
  async checkRun(): Promise<boolean> {
    try {
      const key = `${this.prefix}run_id`;
      let id = await this.cmd.get(key);
      if (id === null) {
        await this.cmd.set(key, randomBytes(8).toString('hex'), 'NX');
        id = await this.cmd.get(key);
      }
      if (id === null) return false;
      const known = this.runId;
      this.runId = id;
      if (known === null || known === id) return false;
      this.fireReset('store_lost');
      return true;
    } catch {
      return false; // unreachable again: the next 'ready' asks again
    }
  }

  private fireReset(reason: ResetReason): void {
    this.logger?.warn('the Redis coordinator lost this process\'s state: publishing it again', { reason });
    for (const h of [...this.resetHandlers]) {
      try {
        h(reason);
      } catch (err) {
        this.logger?.warn('coordinator reset handler failed', { error: err instanceof Error ? err.message : String(err) });
      }
    }
  }

  async listWorkers(): Promise<WorkerRecord[]> {
    const all = await this.run(() => this.cmd.hgetall(this.workersKey()));
    const out: WorkerRecord[] = [];
    for (const [field, raw] of Object.entries(all)) {
      const w = toWorkerRecord(raw);
      if (w) out.push(w);
      else this.logger?.warn('Unreadable worker record in Redis', { workerId: field });
    }
    return out;
  }

  async removeWorker(workerId: string): Promise<void> {
    this.workersPut.delete(workerId);
    await this.run(() => this.cmd.hdel(this.workersKey(), workerId));
  }

  // --- values and events -----------------------------------------------------------------

  async getOrSetValue(name: string, create: () => string): Promise<string> {
    return this.run(async () => {
      const key = `${this.prefix}${name}`;
      const existing = await this.cmd.get(key);
      if (existing !== null) return existing;
      await this.cmd.set(key, create(), 'NX');
      // Whoever set it first wins; everyone reads that value.
      const value = await this.cmd.get(key);
      if (value === null) throw new CoordinatorUnavailableError(`Redis lost the value ${name}`);
      return value;
    });
  }

  async setValue(name: string, value: string, opts: SetValueOptions = {}): Promise<boolean> {
    const key = `${this.prefix}value:${name}`;
    const px = opts.ttlMs ? Math.max(1, Math.round(opts.ttlMs)) : 0;
    const reply = await this.run(() => {
      if (px && opts.onlyIfAbsent) return this.cmd.set(key, value, 'PX', px, 'NX');
      if (px) return this.cmd.set(key, value, 'PX', px);
      if (opts.onlyIfAbsent) return this.cmd.set(key, value, 'NX');
      return this.cmd.set(key, value);
    });
    return reply === 'OK';
  }

  async getValue(name: string): Promise<string | null> {
    return this.run(() => this.cmd.get(`${this.prefix}value:${name}`));
  }

  async deleteValue(name: string): Promise<boolean> {
    return (await this.run(() => this.cmd.del(`${this.prefix}value:${name}`))) === 1;
  }

  async putWebhook(hook: WebhookRegistration): Promise<void> {
    await this.run(() => this.cmd.hset(this.webhooksKey(), hook.url, JSON.stringify(hook)));
  }

  async deleteWebhook(url: string): Promise<boolean> {
    return (await this.run(() => this.cmd.hdel(this.webhooksKey(), url))) === 1;
  }

  async listWebhooks(): Promise<WebhookRegistration[]> {
    const all = await this.run(() => this.cmd.hgetall(this.webhooksKey()));
    const out: WebhookRegistration[] = [];
    for (const raw of Object.values(all)) {
      try {
        out.push(JSON.parse(raw) as WebhookRegistration);
      } catch {
        this.logger?.warn('Unreadable webhook registration in Redis');
      }
    }
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.url.localeCompare(b.url));
  }

  async publish(event: CoordinatorEvent): Promise<void> {
    await this.run(() => this.cmd.publish(this.channel, JSON.stringify(event)));
  }

  subscribe(handler: (event: CoordinatorEvent) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  async ping(): Promise<boolean> {
    try {
      return (await this.run(() => this.cmd.ping())) === 'PONG';
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.handlers.clear();
    this.resetHandlers.clear();
    await Promise.all([shutDown(this.cmd), shutDown(this.sub)]);
  }

  // --- internals -------------------------------------------------------------------------

  private streamKey(id: string): string {
    return `${this.prefix}stream:${id}`;
  }

  private clientKey(streamId: string, clientId: string): string {
    return `${this.prefix}client:${streamId}:${clientId}`;
  }

  private webhooksKey(): string {
    return `${this.prefix}webhooks`;
  }

  private workersKey(): string {
    return `${this.prefix}workers`;
  }

  /** Lease keys arrive whole (`lease:{pool}:{slot}`): only the prefix is added. */
  private leaseKey(key: string): string {
    return `${this.prefix}${key}`;
  }

  /** Waits for a connection being opened, fails at once during a known outage, and turns
   *  connection failures into CoordinatorUnavailableError (server-side errors stay as they are). */
  private async run<T>(op: () => Promise<T>): Promise<T> {
    if (this.closed) throw new CoordinatorUnavailableError('The Redis coordinator is closed');
    await this.whenConnected();
    try {
      return await op();
    } catch (err) {
      throw this.translate(err);
    }
  }

  private whenConnected(): Promise<void> {
    const conn = this.cmd;
    if (conn.status === 'ready') return Promise.resolve();
    if (this.down || conn.status === 'end') return Promise.reject(this.unavailable());
    // One shared wait, so that many calls at start-up add no listeners each.
    this.connecting ??= new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        clearTimeout(timer);
        conn.off('ready', onReady);
        conn.off('close', onClose);
        conn.off('end', onClose);
        this.connecting = null;
        if (err) reject(err);
        else resolve();
      };
      const onReady = (): void => done();
      // Our own 'close' listener ran first and decided whether this is an outage.
      const onClose = (): void => {
        if (this.down || conn.status === 'end') done(this.unavailable());
      };
      const timer = setTimeout(() => done(this.unavailable()), this.connectTimeoutMs);
      conn.on('ready', onReady);
      conn.on('close', onClose);
      conn.on('end', onClose);
    });
    return this.connecting;
  }

  private unavailable(detail = this.lastError): CoordinatorUnavailableError {
    return new CoordinatorUnavailableError(
      detail ? `Redis coordinator unavailable: ${this.scrub(detail)}` : 'Redis coordinator unavailable',
    );
  }

  private translate(err: unknown): unknown {
    if (!(err instanceof Error)) return err;
    // A reply from a working server (wrong type, script error) is a bug, not an outage.
    if (err.name === 'ReplyError' && !UNAVAILABLE_REPLY.test(err.message)) return err;
    if (err instanceof CoordinatorUnavailableError) return err;
    return this.unavailable(err.message);
  }

  private onConnectionError(conn: Redis, err: Error): void {
    if (conn === this.cmd) this.lastError = err.message;
    if (!/NOAUTH/.test(err.message) || this.fallbackPassword === undefined) return;
    if (conn === this.cmd) this.reauthenticating = true; // ioredis reconnects right after
    if (this.cmd.options.password != null) return; // switched already, or configured
    // REDIS_PASSWORD unset but Redis wants one: use API_TOKEN, on both connections, from
    // their next (imminent) connect on.
    this.cmd.options.password = this.fallbackPassword;
    this.sub.options.password = this.fallbackPassword;
    this.logger?.warn('Redis requires a password and REDIS_PASSWORD is unset: trying API_TOKEN');
  }

  private scrub(msg: string): string {
    let out = msg;
    for (const s of this.secrets) out = out.split(s).join('***');
    return out;
  }

  private dispatch(message: string): void {
    const event = parseEvent(message);
    if (!event) return;
    for (const h of [...this.handlers]) {
      try {
        h(event);
      } catch (err) {
        // A throwing handler must not break the subscriber connection's parser.
        this.logger?.warn('Coordinator event handler failed', {
          type: event.type,
          error: err instanceof Error ? err.message : String(err),
        });
      }
    }
  }

  private parseDefinition(raw: string): StreamDefinition | null {
    try {
      const def = JSON.parse(raw) as StreamDefinition;
      if (typeof def?.id === 'string' && typeof def.url === 'string') return def;
    } catch {
      // fall through
    }
    this.logger?.warn('Unreadable stream definition in Redis');
    return null;
  }

  /** client_count is advisory (expiry does not decrement it): a listing rewrites it. */
  private async correctClientCounts(clients: ClientRecord[], streamId?: string): Promise<void> {
    const counts = new Map<string, number>();
    if (streamId) counts.set(streamId, 0);
    for (const c of clients) counts.set(c.streamId, (counts.get(c.streamId) ?? 0) + 1);
    if (counts.size === 0) return;
    const p = this.cmd.pipeline();
    for (const [id, n] of counts) queueScript(p, 'set-client-count', [this.streamKey(id)], [n]);
    await execPipeline(p);
  }

  private async scanKeys(pattern: string): Promise<string[]> {
    const found = new Set<string>(); // SCAN may return a key more than once
    let cursor = '0';
    do {
      const [next, keys] = await this.cmd.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT);
      cursor = next;
      for (const k of keys) found.add(k);
    } while (cursor !== '0');
    return [...found];
  }

  private script(name: ScriptName, keys: string[], args: ScriptArg[]): Promise<unknown> {
    // defineCommand adds the script as a method ioredis' types cannot know about.
    const fn = (this.cmd as unknown as Record<string, (...a: ScriptArg[]) => Promise<unknown>>)[name];
    if (typeof fn !== 'function') throw new Error(`Lua script ${name} is not loaded`);
    return fn.call(this.cmd, ...keys, ...args);
  }
}

// --- module helpers ------------------------------------------------------------------------

function queueScript(p: ChainableCommander, name: ScriptName, keys: string[], args: ScriptArg[]): void {
  const fn = (p as unknown as Record<string, (...a: ScriptArg[]) => ChainableCommander>)[name];
  if (typeof fn !== 'function') throw new Error(`Lua script ${name} is not loaded`);
  fn.call(p, ...keys, ...args);
}

/** Results of a pipeline or MULTI; the first failed command's error is thrown. */
async function execPipeline(p: ChainableCommander): Promise<unknown[]> {
  const results = await p.exec();
  if (!results) throw new CoordinatorUnavailableError('Redis aborted a transaction');
  return results.map(([err, value]) => {
    if (err) throw err;
    return value;
  });
}

async function shutDown(conn: Redis): Promise<void> {
  if (conn.status === 'end') return;
  if (conn.status === 'ready') {
    try {
      await conn.quit();
      return;
    } catch {
      // went down meanwhile: just drop it
    }
  }
  conn.disconnect(); // also cancels a pending reconnect
}

let cachedScripts: LuaScript[] | undefined;

/** The .lua files of src/coordination/lua (tsc does not copy them to dist): `<name>-<keys>.lua`. */
function loadScripts(): LuaScript[] {
  if (cachedScripts) return cachedScripts;
  const dir = findLuaDir();
  const scripts: LuaScript[] = [];
  for (const file of readdirSync(dir)) {
    const m = /^(.+)-(\d+)\.lua$/.exec(file);
    if (!m?.[1] || !m[2]) continue;
    scripts.push({
      name: m[1],
      numberOfKeys: Number(m[2]),
      lua: readFileSync(path.join(dir, file), 'utf8'),
    });
  }
  const missing = SCRIPT_NAMES.filter((n) => !scripts.some((s) => s.name === n));
  if (missing.length > 0) throw new Error(`Missing Lua scripts in ${dir}: ${missing.join(', ')}`);
  cachedScripts = scripts;
  return scripts;
}

function findLuaDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  if (existsSync(path.join(here, 'lua'))) return path.join(here, 'lua'); // run from src/
  // Compiled: dist/src/coordination/ -> walk up to the directory holding src/coordination/lua.
  for (let dir = here; ; ) {
    const candidate = path.join(dir, 'src', 'coordination', 'lua');
    if (existsSync(candidate)) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`src/coordination/lua not found above ${here}`);
    dir = parent;
  }
}

function secretsOf(opts: RedisCoordinatorOptions): string[] {
  const secrets = [opts.password, opts.fallbackPassword];
  try {
    const pw = new URL(opts.url).password;
    if (pw) secrets.push(pw, decodeURIComponent(pw));
  } catch {
    // not a URL ioredis accepts either
  }
  return secrets.filter((s): s is string => typeof s === 'string' && s.length > 0);
}

/** Escapes SCAN MATCH glob characters, so a prefix or id is matched literally. */
function globEscape(s: string): string {
  return s.replace(/[*?[\]\\]/g, '\\$&');
}

/** PX and PEXPIRE want a positive integer. */
function positiveMs(ms: number): number {
  return Math.max(1, Math.round(ms));
}

function isStringRecord(v: unknown): v is Record<string, string> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function toClientRecord(h: Record<string, string>): ClientRecord | null {
  // An empty hash: the record expired between SCAN and HGETALL.
  if (h.client_id === undefined || h.stream_id === undefined) return null;
  return {
    clientId: h.client_id,
    streamId: h.stream_id,
    ipAddress: h.ip_address ?? '',
    userAgent: h.user_agent ?? '',
    username: h.username ?? null,
    workerId: h.worker_id ?? '',
    connectedAt: h.connected_at ?? '',
    lastAccess: h.last_access ?? '',
    bytesServed: Number(h.bytes_served ?? 0) || 0,
    segmentsServed: Number(h.segments_served ?? 0) || 0,
    ...(h.source ? { source: h.source } : {}),
  };
}

function toWorkerRecord(raw: string): WorkerRecord | null {
  let w: Partial<StoredWorker>;
  try {
    w = JSON.parse(raw) as Partial<StoredWorker>;
  } catch {
    return null;
  }
  if (typeof w?.worker_id !== 'string') return null;
  return {
    workerId: w.worker_id,
    pid: Number(w.pid ?? 0),
    host: w.host ?? '',
    startedAt: w.started_at ?? '',
    lastSeen: w.last_seen ?? '',
    sources: Array.isArray(w.sources) ? w.sources : [],
    viewers: Number(w.viewers ?? 0),
    relay: w.relay ?? null,
    relays: { receiving: Number(w.relays?.receiving ?? 0), serving: Number(w.relays?.serving ?? 0) },
    ...(Array.isArray(w.source_details) ? { sourceDetails: w.source_details } : {}),
  };
}

function parseEvent(raw: string): CoordinatorEvent | null {
  try {
    const v: unknown = JSON.parse(raw);
    if (typeof v === 'object' && v !== null && typeof (v as { type?: unknown }).type === 'string') {
      return v as CoordinatorEvent;
    }
  } catch {
    // not ours
  }
  return null;
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CoordinatorUnavailableError(message)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
