// The stream engine of one worker: live sessions by stream id, VOD passthroughs, the viewer
// records kept in the coordinator, and the runtime figures the API reports.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Config } from '../config.js';
import type { ClientRecord, Coordinator, CoordinatorEvent } from '../coordination/coordinator.js';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { clientIdFor } from './client-identity.js';
import type { FailoverInfo } from './http-source.js';
import { LiveSession, type RelayTarget } from './live-session.js';
import type { StreamDefinition } from './stream-definition.js';
import type { ViewerEndReason } from './viewer.js';
import { proxyVod } from './vod-proxy.js';

export interface ViewerIdentity {
  clientId?: string | undefined;
  ip: string;
  userAgent: string;
  username: string | null;
}

export interface EngineDeps {
  config: Config;
  coordinator: Coordinator;
  logger: Logger;
  workerId: string;
  /** The cluster's internal relay secret (shared through the coordinator). */
  relaySecret: () => Promise<string>;
}

/** What this worker knows of a stream at run time. */
export interface StreamRuntime {
  clientCount: number;
  bytesServed: number;
  errorCount: number;
  currentUrl: string | null;
  failoverIndex: number;
  failoverAttempts: number;
  lastFailoverTime: string | null;
  lastAccess: string | null;
  isOwner: boolean;
}

interface StreamTotals {
  bytesServed: number;
  lastAccess: string | null;
}

const LIVE_HEAD = {
  'Content-Type': 'video/mp2t',
  'Cache-Control': 'no-cache, no-store, must-revalidate',
  Pragma: 'no-cache',
  Expires: '0',
  'Accept-Ranges': 'none',
};

export class StreamEngine {
  private readonly sessions = new Map<string, LiveSession>();
  /** Open connections of this worker: client id → record (live and VOD). */
  private readonly clients = new Map<string, ClientRecord>();
  /** Claimed clients whose response started (the others are still waiting or failed). */
  private readonly attached = new Set<string>();
  private readonly vodBytes = new Map<string, number>();
  private readonly totals = new Map<string, StreamTotals>();
  private readonly refresh: NodeJS.Timeout;
  private readonly clientTtlMs: number;
  private readonly unsubscribe: () => void;
  private closing = false;

  constructor(private readonly deps: EngineDeps) {
    const { heartbeatIntervalMs } = deps.config;
    // Client records outlive a few missed refreshes, and vanish by TTL if this worker dies.
    this.clientTtlMs = Math.max(3 * heartbeatIntervalMs, 30_000);
    this.refresh = setInterval(() => void this.refreshClients(), Math.min(heartbeatIntervalMs, 10_000));
    this.refresh.unref();
    // A deletion on any worker (or host) stops the stream wherever it plays.
    this.unsubscribe = deps.coordinator.subscribe((e) => {
      if (e.type === 'stream_deleted' && e.streamId) this.stopStream(e.streamId);
    });
  }

  get liveHead(): Record<string, string> {
    return LIVE_HEAD;
  }

  /** The HEAD of a live stream: answered at once, the upstream is not touched. */
  headLive(res: ServerResponse, extra: Record<string, string>): void {
    res.writeHead(200, { ...LIVE_HEAD, ...extra });
    res.end();
  }

  /**
   * Claims a client id for a new request in the coordinator (create-if-absent), so players
   * connecting at the same moment, on any worker, never share one. Released by
   * `releaseClient` unless a viewer attached.
   */
  async claimClient(def: StreamDefinition, who: ViewerIdentity): Promise<string> {
    const tried = new Set<string>();
    for (;;) {
      const taken = (id: string): boolean => tried.has(id) || this.clients.has(`${def.id}:${id}`);
      const clientId = clientIdFor({ ...who, streamId: def.id }, taken);
      const now = new Date().toISOString();
      const record: ClientRecord = {
        clientId, streamId: def.id, ipAddress: who.ip, userAgent: who.userAgent, username: who.username,
        workerId: this.deps.workerId, connectedAt: now, lastAccess: now, bytesServed: 0, segmentsServed: 0,
      };
      const key = `${def.id}:${clientId}`;
      this.clients.set(key, record);
      if (await this.deps.coordinator.putClient(record, this.clientTtlMs, true).catch((err: unknown) => {
        this.clients.delete(key);
        throw err;
      })) return clientId;
      this.clients.delete(key);
      tried.add(clientId);
    }
  }

  /** Forgets a claim whose request ended without a viewer (HEAD, 404, 502, hang-up). */
  async releaseClient(streamId: string, clientId: string): Promise<void> {
    if (!this.attached.has(`${streamId}:${clientId}`)) await this.clientGone(streamId, clientId, 'closed');
  }

  /**
   * Plays a live TS stream: resolves once the viewer is attached (or has gone), rejects with
   * an AppError (502) when the source fails before its first byte.
   */
  async playLive(def: StreamDefinition, clientId: string, who: ViewerIdentity, res: ServerResponse, extra: Record<string, string>): Promise<void> {
    this.assertOpen();
    let session = this.sessions.get(def.id);
    if (!session) {
      session = this.createSession(def);
      this.sessions.set(def.id, session);
    }
    const viewer = await session.addViewer(clientId, res, { ...LIVE_HEAD, ...extra });
    if (viewer && !viewer.isDone) await this.clientConnected(def, clientId, who);
  }

  async playVod(def: StreamDefinition, clientId: string, who: ViewerIdentity, req: IncomingMessage, res: ServerResponse, extra: Record<string, string>): Promise<void> {
    this.assertOpen();
    const method = req.method === 'HEAD' ? 'HEAD' : 'GET';
    const { config } = this.deps;
    let connected = false;
    try {
      await proxyVod({
        def, method, res, extraHeaders: extra,
        range: req.headers.range,
        defaultUserAgent: config.defaultUserAgent,
        timeoutMs: config.connectionTimeoutMs,
        onStart: () => {
          if (method === 'GET') {
            connected = true;
            void this.clientConnected(def, clientId, who);
          }
        },
        onBytes: (n) => this.vodBytes.set(def.id, (this.vodBytes.get(def.id) ?? 0) + n),
      });
    } finally {
      if (connected) await this.clientGone(def.id, clientId, 'closed');
    }
  }

  /** The live session of a stream on this worker, if one runs. */
  session(id: string): LiveSession | undefined {
    return this.sessions.get(id);
  }

  /**
   * Serves a relay connection to another worker from this worker's channel (it must be the
   * owner); rejects with an AppError (502) when the source fails before its first byte.
   */
  async serveRelay(streamId: string, res: ServerResponse): Promise<'served' | 'not_owner' | 'not_found'> {
    const def = await this.deps.coordinator.getStream(streamId);
    if (!def || def.kind !== 'live') return 'not_found';
    let session = this.sessions.get(def.id);
    if (!session) {
      session = this.createSession(def);
      this.sessions.set(def.id, session);
    }
    return (await session.addRelayViewer(res)) === 'not_owner' ? 'not_owner' : 'served';
  }

  /** What the heartbeat reports. */
  workerStats(): { sources: string[]; viewers: number; relays: { receiving: number; serving: number } } {
    const sources: string[] = [];
    let receiving = 0;
    let serving = 0;
    for (const s of this.sessions.values()) {
      if (s.isOwner) sources.push(`${s.id}:1`);
      if (s.isRelaying) receiving++;
      serving += s.relayViewers.size;
    }
    return { sources, viewers: this.clients.size, relays: { receiving, serving } };
  }

  private async resolveRelay(holder: string): Promise<RelayTarget | null> {
    const workerId = holder.slice(0, holder.lastIndexOf(':'));
    const worker = (await this.deps.coordinator.listWorkers()).find((w) => w.workerId === workerId);
    return worker?.relay ? { workerId, address: worker.relay } : null;
  }

  /** Stops a stream on this worker now: viewers disconnected, source stopped. */
  stopStream(id: string): boolean {
    const session = this.sessions.get(id);
    if (!session) return false;
    session.stop();
    return true;
  }

  failover(id: string): boolean {
    return this.sessions.get(id)?.failover() ?? false;
  }

  runtime(id: string): StreamRuntime {
    const session = this.sessions.get(id);
    const src = session?.httpSource ?? null;
    const totals = this.totals.get(id);
    let clientCount = 0;
    for (const c of this.clients.values()) if (c.streamId === id) clientCount++;
    return {
      clientCount,
      bytesServed: (totals?.bytesServed ?? 0) + (session?.bytesServed ?? 0) + (this.vodBytes.get(id) ?? 0),
      errorCount: src?.errorCount ?? 0,
      currentUrl: src?.currentUrl ?? null,
      failoverIndex: src?.failoverIndex ?? -1,
      failoverAttempts: src?.failoverAttempts ?? 0,
      lastFailoverTime: src?.lastFailoverTime ?? null,
      lastAccess: session?.lastAccess.toISOString() ?? totals?.lastAccess ?? null,
      isOwner: session?.isOwner ?? false,
    };
  }

  /** Open connections on this worker, with live byte counts. */
  localClients(): ClientRecord[] {
    return [...this.clients.values()].map((c) => ({ ...c, bytesServed: this.clientBytes(c) }));
  }

  forget(id: string): void {
    this.totals.delete(id);
    this.vodBytes.delete(id);
  }

  /** Refuses new viewers, then waits until the current ones leave or `ms` passes. */
  async drain(ms: number): Promise<void> {
    this.closing = true;
    const until = Date.now() + ms;
    while (this.clients.size > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
  }

  /** Stops accepting viewers and ends every session. */
  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.refresh);
    this.unsubscribe();
    for (const s of [...this.sessions.values()]) s.stop();
    await Promise.all([...this.clients.values()].map((c) => this.clientGone(c.streamId, c.clientId, 'closed')));
  }

  private assertOpen(): void {
    if (this.closing) throw new AppError(503, 'SHUTTING_DOWN', 'The proxy is shutting down');
  }

  private createSession(def: StreamDefinition): LiveSession {
    const { config, coordinator, logger, workerId } = this.deps;
    return new LiveSession({
      def, coordinator, logger, workerId,
      leaseTtlMs: config.leaseTtlMs,
      graceMs: config.sharedStreamGraceMs,
      channelBufferBytes: config.channelBufferBytes,
      channelBufferMs: config.channelBufferMs,
      viewerMaxDrops: config.viewerMaxDrops,
      viewerStallTimeoutMs: config.viewerStallTimeoutMs,
      source: {
        defaultUserAgent: config.defaultUserAgent,
        connectTimeoutMs: config.connectionTimeoutMs,
        chunkTimeoutMs: config.liveChunkTimeoutMs,
        retryAttempts: config.streamRetryAttempts,
        retryDelayMs: config.streamRetryDelayMs,
        exponentialBackoff: config.streamRetryExponentialBackoff,
        totalTimeoutMs: config.streamTotalTimeoutMs,
        maxFailoverAttempts: config.maxFailoverAttempts,
      },
      resolveRelay: (holder) => this.resolveRelay(holder),
      relaySecret: this.deps.relaySecret,
      onFailover: (info) => void this.publishFailover(def, info),
      onClosed: (s) => this.sessionClosed(s),
      onViewerEnd: (clientId, _viewer, reason) => void this.clientGone(def.id, clientId, reason),
    });
  }

  private sessionClosed(session: LiveSession): void {
    if (this.sessions.get(session.id) !== session) return;
    this.sessions.delete(session.id);
    const t = this.totals.get(session.id) ?? { bytesServed: 0, lastAccess: null };
    t.bytesServed += session.bytesServed;
    t.lastAccess = session.lastAccess.toISOString();
    this.totals.set(session.id, t);
  }

  private async clientConnected(def: StreamDefinition, clientId: string, who: ViewerIdentity): Promise<void> {
    this.attached.add(`${def.id}:${clientId}`);
    await this.publish({
      type: 'client_connected', streamId: def.id,
      data: { client_id: clientId, user_agent: who.userAgent, ip_address: who.ip, username: who.username, worker_id: this.deps.workerId, metadata: def.metadata },
    });
  }

  private async clientGone(streamId: string, clientId: string, reason: ViewerEndReason): Promise<void> {
    const key = `${streamId}:${clientId}`;
    const record = this.clients.get(key);
    if (!record) return;
    const bytes = this.clientBytes(record);
    this.clients.delete(key);
    const wasAttached = this.attached.delete(key);
    await this.coordinatorWrite(() => this.deps.coordinator.deleteClient(streamId, clientId));
    if (!wasAttached) return;
    await this.publish({
      type: 'client_disconnected', streamId,
      data: { client_id: clientId, bytes_served: bytes, segments_served: 0, reason },
    });
  }

  private clientBytes(record: ClientRecord): number {
    const viewer = this.sessions.get(record.streamId)?.viewers.get(record.clientId);
    return viewer ? viewer.bytesSent : record.bytesServed;
  }

  private async refreshClients(): Promise<void> {
    const now = new Date().toISOString();
    for (const c of this.clients.values()) {
      c.bytesServed = this.clientBytes(c);
      c.lastAccess = now;
      await this.coordinatorWrite(() => this.deps.coordinator.putClient(c, this.clientTtlMs));
    }
  }

  private async publishFailover(def: StreamDefinition, info: FailoverInfo): Promise<void> {
    await this.publish({
      type: 'failover_triggered', streamId: def.id,
      data: {
        old_url: info.oldUrl, new_url: info.newUrl, failover_index: info.failoverIndex,
        attempt_number: info.attemptNumber, reason: info.reason,
        client_count: this.runtime(def.id).clientCount, metadata: def.metadata,
      },
    });
  }

  private publish(event: CoordinatorEvent): Promise<void> {
    return this.coordinatorWrite(() => this.deps.coordinator.publish(event));
  }

  // Bookkeeping never breaks playback: a coordinator hiccup is logged, the viewer plays on.
  private async coordinatorWrite(fn: () => Promise<unknown>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      this.deps.logger.warn('coordinator write failed', { error: String(err) });
    }
  }
}
