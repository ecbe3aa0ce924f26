// The stream engine of one worker: live sessions by source key (`{pool_key}:{slot}`), VOD
// passthroughs, the viewer records kept in the coordinator, and the run-time figures the API
// reports. Direct live streams have one source per stream; transcodes one FFmpeg per pool
// key and slot (or one per viewer when pooling is off).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Config } from '../config.js';
import { holderWorkerId, type ClientRecord, type Coordinator } from '../coordination/coordinator.js';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { Channel } from './live/channel.js';
import { clientIdFor } from './client-identity.js';
import type { StreamEvents } from './events/stream-events.js';
import { FfmpegSource } from './sources/ffmpeg-source.js';
import { HttpSource, type FailoverInfo, type SourceError } from './sources/http-source.js';
import { Admission, BEHIND_MS, LAG_MS, SETTLE_MS, type LoadSample } from './live/admission.js';
import { leaseKeyOf, LiveSession, type OwnedSource, type RelayTarget } from './live/live-session.js';
import { kindFromUrl, md5, sha256, type StreamDefinition } from './stream-definition.js';
import { FailoverControl, type FailoverAnswer } from './live/failover-control.js';
import type { SourceState } from './sources/failover-plan.js';
import type { Viewer, ViewerEndReason } from './live/viewer.js';
import { NO_TELEMETRY, type StreamTelemetry } from './stream-telemetry.js';
import { proxyVod } from './vod/vod-proxy.js';
import { withInputOptions } from './transcode/input-options.js';
import type { ProgramInfo } from './mpegts/media-info.js';
import { resolveMediaUrl, type ResolverEnv } from './resolvers/resolver-run.js';
import { ResolverSource } from './sources/resolver-source.js';
import { confineInput } from './transcode/input-confinement.js';
import { stopIdleSourcesToHost } from './live/idle-sources.js';
import { SilenceMonitor, type SilenceSettings } from './sources/silence-monitor.js';
import { tlsVerifyFor } from './sources/upstream.js';

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
  /** Reads the relay secret again (throttled) after an owner refused ours. */
  rereadRelaySecret?: () => Promise<string>;
  /** Lifecycle events (API.md §5.1), emitted once per cluster. */
  events: StreamEvents;
  /** The FFmpeg pids this worker runs changed (the primary kills them if the worker dies). */
  onPids?: (pids: number[]) => void;
  /** The sources this worker owns changed. */
  onSourcesChanged?: () => void;
  /** Where events are counted (metrics); nothing by default. */
  telemetry?: StreamTelemetry;
  /**
   * Whether a live viewer may move to `workerId`, a worker of this host (the viewer hand-off's
   * load rule, src/http/socket-handoff.ts); unset: viewers never move.
   */
  canMoveTo?: (workerId: string) => boolean;
}

export interface TranscodeRuntime {
  fps: number | null;
  speed: number | null;
  bitrate_kbps: number | null;
  frame: number | null;
  dropped_frames: number | null;
}

/** A source this worker owns, as /stats/pooled lists it. */
export interface OwnedSourceInfo {
  streamId: string;
  poolKey: string;
  slot: number;
  clientCount: number;
  pid: number | null;
  startedAt: string;
  transcode: TranscodeRuntime | null;
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
  sourcePid: number | null;
  transcode: TranscodeRuntime | null;
  /** The programme of this worker's channel for the stream, and its average input rate. */
  program: ProgramInfo | null;
  channelKbps: number | null;
}

interface StreamTotals {
  bytesServed: number;
  lastAccess: string | null;
}

const FFMPEG_KILL_AFTER_MS = 3000;
/** How often sessions are checked against the stream registry (missed deletion events). */
const RECONCILE_MS = 5000;
/** How long an adopted session waits for the old worker's relay before it idles. */
const ADOPT_WAIT_MS = 10_000;
/** Client records are refreshed (bytes served, TTL) at most this often. */
const CLIENT_REFRESH_MIN_MS = 120_000;

/** The source key of a stream that is not a transcode: its one source, slot 1. */
const directKey = (id: string): string => `${id}:1`;
const LIVE_HEAD = {
  'Content-Type': 'video/mp2t',
  'Cache-Control': 'no-cache, no-store, must-revalidate',
  Pragma: 'no-cache',
  Expires: '0',
  'Accept-Ranges': 'none',
};

export class StreamEngine {
  private readonly sessions = new Map<string, LiveSession>();
  /** Closed sessions whose source is still exiting: shutdown waits for them. */
  private readonly exiting = new Set<Promise<void>>();
  /** Open connections of this worker: client id → record (live and VOD). */
  private readonly clients = new Map<string, ClientRecord>();
  /** Claimed clients whose response started (the others are still waiting or failed). */
  private readonly attached = new Set<string>();
  private readonly vodBytes = new Map<string, number>();
  /** Open VOD connections per stream id. */
  private readonly vodOpen = new Map<string, number>();
  private readonly totals = new Map<string, StreamTotals>();
  private readonly ffmpegPids = new Set<number>();
  /** Definitions of the streams this worker has viewers of (for events after they leave). */
  private readonly defs = new Map<string, StreamDefinition>();
  /** The latest definition of each stream with a session here (warm joins read it). */
  private readonly latest = new Map<string, StreamDefinition>();
  /** Warm joins' client claims in flight: `{stream}:{id sent in X-Client-ID}` → the record's id. */
  private readonly claims = new Map<string, Promise<string>>();
  /** Warm joins whose sent id was taken on another worker: `{stream}:{sent id}` → the record's id. */
  private readonly claimedAs = new Map<string, string>();
  /** Slot choice per pool key, one at a time on this worker. */
  private readonly slotLocks = new Map<string, Promise<unknown>>();
  private readonly refresh: NodeJS.Timeout;
  private readonly reconcileTimer: NodeJS.Timeout;
  /** Streams found missing from the registry at the last reconciliation. */
  private missing = new Set<string>();
  private readonly clientTtlMs: number;
  private readonly unsubscribe: () => void;
  private readonly failovers: FailoverControl;
  private closing = false;
  /** Rolling restart, old side: sessions never take a lease again. */
  private handingOver = false;
  private readonly telemetry: StreamTelemetry;
  /** Refuses new viewers while this worker is not keeping up with those it has. */
  readonly admission: Admission;

  constructor(private readonly deps: EngineDeps) {
    this.telemetry = deps.telemetry ?? NO_TELEMETRY;
    const { heartbeatIntervalMs } = deps.config;
    // Client records outlive a few missed refreshes, and vanish by TTL if this worker dies.
    // A dead worker's records are deleted by the primary or the sweep; the TTL is only the
    // last resort. So refreshes are rare: coordinator traffic stays a matter of joins and
    // leaves, not of how many viewers are watching.
    const refreshMs = Math.max(heartbeatIntervalMs, CLIENT_REFRESH_MIN_MS);
    this.clientTtlMs = 3 * refreshMs;
    this.refresh = setInterval(() => void this.refreshClients(), refreshMs);
    this.refresh.unref();
    this.admission = new Admission({
      maxViewers: deps.config.maxViewersPerWorker,
      laggingShare: deps.config.admissionLaggingShare,
      eluLimit: 0.95,
      retryAfterS: 5,
      shedShare: deps.config.admissionShedShare,
      sample: () => this.loadSample(),
      shed: (share) => this.shedNewest(share),
    });
    // A deletion on any worker (or host) stops the stream wherever it plays.
    this.unsubscribe = deps.coordinator.subscribe((e) => {
      if (e.type === 'stream_deleted' && e.streamId) this.stopStream(e.streamId);
      if (e.type === 'stream_updated' && e.streamId) void this.definitionChanged(e.streamId);
    });
    this.failovers = new FailoverControl({
      coordinator: deps.coordinator, logger: deps.logger,
      ownerOf: (id) => this.sessionsOf(id).find((s) => s.isOwner),
    });
    // Pub/sub is at-most-once: a worker whose subscriber was down when stream_deleted went
    // out learns of the deletion from the registry itself.
    this.reconcileTimer = setInterval(() => void this.reconcile(), RECONCILE_MS);
    this.reconcileTimer.unref();
  }

  /**
   * Stops the sessions of streams no longer in the registry. A stream must be missing at two
   * reconciliations in a row: a coordinator that came back empty is refilled (republish) in
   * between, and a definition being re-created is not cut.
   */
  async reconcile(): Promise<string[]> {
    const ids = new Set([...this.sessions.values()].map((s) => s.id));
    const missing = new Set<string>();
    const stopped: string[] = [];
    for (const id of ids) {
      let def: StreamDefinition | null;
      try {
        def = await this.deps.coordinator.getStream(id);
      } catch {
        return stopped; // the coordinator cannot tell: nothing is decided now
      }
      if (def) {
        if (this.sessionsOf(id).length > 0) this.latest.set(id, def); // a missed stream_updated
        continue;
      }
      missing.add(id);
      if (this.missing.has(id) && this.stopStream(id)) {
        stopped.push(id);
        this.deps.logger.warn('stream no longer in the registry: stopped here (missed its deletion event)', { stream_id: id });
      }
    }
    this.missing = missing;
    return stopped;
  }

  /**
   * After the coordinator lost this worker's state: the definitions of the streams it plays
   * (`withDefinitions`: only when the whole store was lost, never after a sweep, which would
   * bring back a stream deleted meanwhile), its leases and statuses, its viewers' records.
   */
  async republish(withDefinitions: boolean): Promise<void> {
    const { coordinator } = this.deps;
    if (withDefinitions) {
      const defs = new Map<string, StreamDefinition>(this.defs);
      for (const s of this.sessions.values()) defs.set(s.id, s.definition);
      await Promise.all([...defs.values()].map((d) => this.coordinatorWrite(() => coordinator.putStream(d))));
    }
    await Promise.all([...this.sessions.values()].map((s) => s.reassert()));
    await Promise.all([...this.clients.values()].map((c) => this.coordinatorWrite(() =>
      coordinator.putClient({ ...c, bytesServed: this.clientBytes(c), lastAccess: new Date().toISOString() }, this.clientTtlMs))));
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
    if (def.kind !== 'transcode' && this.warmDefinition(def.id)) return this.claimMeanwhile(def, who);
    const tried = new Set<string>();
    for (;;) {
      const taken = (id: string): boolean => tried.has(id) || this.clients.has(`${def.id}:${id}`);
      const clientId = clientIdFor({ ...who, streamId: def.id }, taken);
      const record = this.newRecord(def.id, clientId, who);
      const key = `${def.id}:${clientId}`;
      this.clients.set(key, record);
      this.defs.set(def.id, def);
      if (await this.deps.coordinator.putClient(record, this.clientTtlMs, true).catch((err: unknown) => {
        this.clients.delete(key);
        throw err;
      })) return clientId;
      this.clients.delete(key);
      tried.add(clientId);
    }
  }

  /**
   * The definition of a stream whose channel already has data on this worker, read without a
   * coordinator round trip; null otherwise (the caller asks the coordinator). Kept current by
   * the stream_updated and stream_deleted events and by the reconciliation (missed events).
   */
  warmDefinition(id: string): StreamDefinition | null {
    const session = this.session(id);
    if (this.closing || !session || !session.channel.hasData || session.channel.isEnded || this.missing.has(id)) return null;
    return this.latest.get(id) ?? session.definition;
  }

  /**
   * Warm join: the id is chosen from this worker's view and the response starts at once while
   * the cluster-wide claim (create-if-absent) runs. Should another worker hold that id (the
   * same player twice at one moment) the record takes a suffixed id instead, and the
   * X-Client-ID already sent keeps the first; events and records use the record's id.
   * A coordinator failure leaves the record here (written by the next refresh): bookkeeping
   * never breaks playback.
   */
  private claimMeanwhile(def: StreamDefinition, who: ViewerIdentity): string {
    const inUse = (id: string): boolean => this.clients.has(`${def.id}:${id}`) || this.claimedAs.has(`${def.id}:${id}`);
    const sentId = clientIdFor({ ...who, streamId: def.id }, inUse);
    const sentKey = `${def.id}:${sentId}`;
    const record = this.newRecord(def.id, sentId, who);
    this.clients.set(sentKey, record);
    this.defs.set(def.id, def);
    const claim = (async (): Promise<string> => {
      const tried = new Set<string>();
      try {
        while (!(await this.deps.coordinator.putClient(record, this.clientTtlMs, true))) {
          tried.add(record.clientId);
          const next = clientIdFor({ ...who, streamId: def.id }, (id) => tried.has(id) || inUse(id));
          this.clients.delete(`${def.id}:${record.clientId}`);
          record.clientId = next;
          this.clients.set(`${def.id}:${next}`, record);
          this.claimedAs.set(sentKey, next);
        }
      } catch (err) {
        this.deps.logger.warn('client claim failed; the viewer plays on', { stream_id: def.id, error: String(err) });
      } finally {
        this.claims.delete(sentKey);
      }
      return record.clientId;
    })();
    this.claims.set(sentKey, claim);
    return sentId;
  }

  /** A client record of this worker, connected now. */
  private newRecord(streamId: string, clientId: string, who: ViewerIdentity): ClientRecord {
    const now = new Date().toISOString();
    return {
      clientId, streamId, ipAddress: who.ip, userAgent: who.userAgent, username: who.username,
      workerId: this.deps.workerId, connectedAt: now, lastAccess: now, bytesServed: 0, segmentsServed: 0,
    };
  }

  /** The id a connection's record has: its sent id, unless a warm claim moved it (awaited). */
  private recordIdOf(streamId: string, sentId: string): string | Promise<string> {
    const key = `${streamId}:${sentId}`;
    return this.claims.get(key) ?? this.claimedAs.get(key) ?? sentId;
  }

  /**
   * Throws 503 OVERLOADED (with Retry-After) when this worker takes no new viewer now; called
   * before anything is claimed, so a refusal costs no coordinator round trip.
   */
  admit(): void {
    this.assertOpen();
    this.admission.admit();
  }

  /**
   * Closes `share` (rounded up) of this worker's live viewers, newest first (reason `shed`): a
   * worker reading its sources late gives the rest their rate back. Relay feeds are kept (each
   * carries a whole worker's viewers of the stream). Returns how many were closed.
   */
  shedNewest(share: number): number {
    const all: Viewer[] = [];
    for (const s of this.sessions.values()) for (const v of s.viewers.values()) all.push(v);
    all.sort((a, b) => b.joinedAt - a.joinedAt);
    const gone = all.slice(0, Math.ceil(all.length * share));
    for (const v of gone) v.close('shed');
    if (gone.length > 0) this.deps.logger.warn('reading sources late: closed the newest viewers', { viewers: gone.length, of: all.length });
    return gone.length;
  }

  /** Viewers of this worker (relays to other workers included) and how many lag now. */
  private loadSample(): LoadSample {
    const now = Date.now();
    let viewers = 0;
    let lagging = 0;
    let fastest: number | null = null;
    const lags = (v: Viewer): boolean =>
      (v.waitingSince > 0 && now - v.waitingSince >= LAG_MS) || (now - v.joinedAt >= SETTLE_MS && v.behindMs(now) >= BEHIND_MS);
    for (const s of this.sessions.values()) {
      const r = s.viewers.size + s.relayViewers.size > 0 ? s.channel.clockRatio : null;
      if (r !== null && (fastest === null || r > fastest)) fastest = r;
      for (const v of s.viewers.values()) {
        viewers++;
        if (lags(v)) lagging++;
      }
      for (const v of s.relayViewers) {
        viewers++;
        if (lags(v)) lagging++;
      }
    }
    return { viewers: Math.max(viewers, this.clients.size), lagging, fastestClock: fastest };
  }

  /** Forgets a claim whose request ended without a viewer (HEAD, 404, 502, hang-up). */
  async releaseClient(streamId: string, clientId: string): Promise<void> {
    const recordId = await this.recordIdOf(streamId, clientId);
    if (!this.attached.has(`${streamId}:${recordId}`)) await this.clientGone(streamId, clientId, 'closed');
  }

  /**
   * Plays a live TS stream: resolves once the viewer is attached (or has gone), rejects with
   * an AppError (502) when the source fails before its first byte. `requestedAt`
   * (performance.now() when the request arrived) starts the time-to-first-byte clock.
   * `movable`: rejects with MoveToOwner (nothing sent) when another worker of this host won the
   * race for the source and has room; the caller moves the connection there.
   */
  async playLive(
    def: StreamDefinition, clientId: string, who: ViewerIdentity, res: ServerResponse, extra: Record<string, string>,
    requestedAt = performance.now(), movable = false,
  ): Promise<void> {
    this.assertOpen();
    const key = def.kind === 'transcode' ? await this.transcodeKey(def, clientId) : directKey(def.id);
    let session = this.sessions.get(key);
    if (!session) {
      session = this.createSession(def, key);
      this.sessions.set(key, session);
    }
    const warm = session.channel.hasData;
    // A transcode's source key depends on the client: it is chosen again wherever it lands.
    const viewer = await session.addViewer(clientId, res, { ...LIVE_HEAD, ...extra }, movable && def.kind !== 'transcode');
    if (viewer && viewer.bytesSent > 0) this.telemetry.firstByte(warm ? 'warm' : 'cold', (performance.now() - requestedAt) / 1000);
    // A warm join's claim ran meanwhile: events and records use the id it settled on.
    const recordId = await this.recordIdOf(def.id, clientId);
    if (viewer && !viewer.isDone) await this.clientConnected(def, recordId, who);
  }

  /**
   * The worker a new live viewer of `def` should move to (viewer hand-off), or null: another
   * worker of this host holds the source's lease, this one has no viewer of it (with one, the
   * relay runs anyway and the new viewer costs one more write either way), and the load rule
   * (`canMoveTo`) says the owner has room. Null for VOD and transcodes (whose source key
   * depends on the client), and while nobody owns it (the viewer starts it here). One
   * coordinator read.
   */
  async moveTarget(def: StreamDefinition): Promise<string | null> {
    const { canMoveTo, coordinator, workerId } = this.deps;
    if (!canMoveTo || def.kind === 'vod' || def.kind === 'transcode') return null;
    const session = this.session(def.id);
    if (session && (session.isOwner || session.viewers.size > 0)) return null;
    const holder = await coordinator.leaseHolder(leaseKeyOf(directKey(def.id)));
    const owner = holder ? holderWorkerId(holder) : null;
    return owner && owner !== workerId && canMoveTo(owner) ? owner : null;
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
            this.vodOpen.set(def.id, (this.vodOpen.get(def.id) ?? 0) + 1);
            void this.clientConnected(def, clientId, who);
          }
        },
        onBytes: (n) => this.vodBytes.set(def.id, (this.vodBytes.get(def.id) ?? 0) + n),
      });
    } finally {
      if (connected) {
        const open = (this.vodOpen.get(def.id) ?? 1) - 1;
        if (open > 0) this.vodOpen.set(def.id, open);
        else this.vodOpen.delete(def.id);
        await this.clientGone(def.id, clientId, 'closed');
      }
    }
  }

  /**
   * An HLS viewer (a poller, not a socket) seen on this worker: its record is written (an id
   * is one viewer, whichever worker its requests land on) and `client_connected` sent once.
   */
  async trackHlsClient(def: StreamDefinition, clientId: string, who: ViewerIdentity): Promise<void> {
    const key = `${def.id}:${clientId}`;
    if (this.clients.has(key)) return;
    const record = this.newRecord(def.id, clientId, who);
    this.clients.set(key, record);
    await this.coordinatorWrite(() => this.deps.coordinator.putClient(record, this.clientTtlMs));
    await this.clientConnected(def, clientId, who);
  }

  /** Bytes and segments an HLS viewer received. */
  countHlsBytes(streamId: string, clientId: string, bytes: number, segments: number): void {
    const record = this.clients.get(`${streamId}:${clientId}`);
    if (!record) return;
    record.bytesServed += bytes;
    record.segmentsServed += segments;
    record.lastAccess = new Date().toISOString();
  }

  /** An HLS viewer stopped polling (CLIENT_TIMEOUT) or its stream stopped. */
  async untrackHlsClient(streamId: string, clientId: string): Promise<void> {
    await this.clientGone(streamId, clientId, 'closed');
  }

  /** The session of a direct live stream on this worker, if one runs. */
  session(id: string): LiveSession | undefined {
    return this.sessions.get(directKey(id));
  }

  /** Every session of a stream on this worker (a transcode may have several slots). */
  sessionsOf(id: string): LiveSession[] {
    return [...this.sessions.values()].filter((s) => s.id === id);
  }

  /**
   * Serves a relay connection to another worker from this worker's channel (it must be the
   * owner); rejects with an AppError (502) when the source fails before its first byte.
   */
  async serveRelay(key: string, res: ServerResponse): Promise<'served' | 'not_owner'> {
    const session = this.sessions.get(key);
    if (!session) return 'not_owner';
    return (await session.addRelayViewer(res)) === 'not_owner' ? 'not_owner' : 'served';
  }

  /** Every live session of this worker (metrics read their plain fields at scrape time). */
  liveSessions(): IterableIterator<LiveSession> {
    return this.sessions.values();
  }

  /** Open VOD connections and bytes served per stream id (metrics). */
  vodFigures(): Array<{ streamId: string; viewers: number; bytesServed: number }> {
    return [...this.vodOpen].map(([streamId, viewers]) => ({ streamId, viewers, bytesServed: this.vodBytes.get(streamId) ?? 0 }));
  }

  /** FFmpeg processes this worker runs. */
  get ffmpegProcessCount(): number {
    return this.ffmpegPids.size;
  }

  /** What the heartbeat reports. */
  workerStats(): { sources: string[]; viewers: number; relays: { receiving: number; serving: number } } {
    const sources: string[] = [];
    let receiving = 0;
    let serving = 0;
    for (const s of this.sessions.values()) {
      if (s.isOwner) sources.push(s.key);
      if (s.isRelaying) receiving++;
      serving += s.relayViewers.size;
    }
    return { sources, viewers: this.clients.size, relays: { receiving, serving } };
  }

  /** Where the holder of a lease token serves relays (its worker's relay listener). */
  async resolveRelay(holder: string): Promise<RelayTarget | null> {
    const workerId = holderWorkerId(holder);
    const worker = (await this.deps.coordinator.listWorkers()).find((w) => w.workerId === workerId);
    return worker?.relay ? { workerId, address: worker.relay } : null;
  }

  /** Stops a stream on this worker now: viewers disconnected, sources stopped. */
  stopStream(id: string): boolean {
    this.latest.delete(id);
    const sessions = this.sessionsOf(id);
    for (const s of sessions) s.stop(true);
    return sessions.length > 0;
  }

  /** Manual failover, acted on by the owner wherever it runs (API.md §3.4). */
  failover(id: string): Promise<FailoverAnswer> {
    return this.failovers.request(id);
  }

  /** The owner's source figures (current URL, index, attempts, errors), from any worker. */
  sourceState(id: string): Promise<SourceState | null> {
    return this.failovers.state(id);
  }

  /** A re-POSTed definition reaches the source this worker runs for it. */
  private async definitionChanged(id: string): Promise<void> {
    if (this.sessionsOf(id).length === 0) return;
    const def = await this.deps.coordinator.getStream(id).catch(() => null);
    if (!def) return;
    const sessions = this.sessionsOf(id);
    if (sessions.length > 0) this.latest.set(id, def);
    for (const s of sessions) if (s.isOwner) s.updateDefinition(def);
  }

  /** Rolling restart: the sessions whose source this worker owns (key and definition). */
  ownedSessions(): Array<{ key: string; def: StreamDefinition }> {
    return [...this.sessions.values()].filter((s) => s.isOwner).map((s) => ({ key: s.key, def: s.definition }));
  }

  /** Rolling restart, old side: every session gives its source up and relays from now on. */
  handOver(): void {
    this.handingOver = true;
    for (const s of this.sessions.values()) s.handOver();
  }

  /**
   * Rolling restart, new side: a session for a source the old worker gives up. It takes the
   * lease once released; the old worker's relay to it is its interest (else it idles).
   */
  adopt(def: StreamDefinition, key: string): void {
    if (this.closing || this.sessions.has(key)) return;
    const session = this.createSession(def, key);
    this.sessions.set(key, session);
    session.idleUnlessWatched(ADOPT_WAIT_MS);
  }

  /** Sources this worker owns now. */
  ownedSources(): OwnedSourceInfo[] {
    const out: OwnedSourceInfo[] = [];
    for (const s of this.sessions.values()) {
      if (!s.isOwner) continue;
      const [poolKey, slot] = splitKey(s.key);
      out.push({
        streamId: s.id, poolKey, slot, clientCount: s.viewers.size, pid: s.sourcePid,
        startedAt: s.startedAt.toISOString(), transcode: transcodeRuntime(s.ownedSource),
      });
    }
    return out;
  }

  runtime(id: string): StreamRuntime {
    const sessions = this.sessionsOf(id);
    const session = sessions[0];
    const owned = sessions.find((s) => s.isOwner);
    const src = owned?.failoverPlan ?? null;
    const totals = this.totals.get(id);
    let clientCount = 0;
    for (const c of this.clients.values()) if (c.streamId === id) clientCount++;
    return {
      clientCount,
      bytesServed: (totals?.bytesServed ?? 0) + sessions.reduce((n, s) => n + s.bytesServed, 0) + (this.vodBytes.get(id) ?? 0),
      errorCount: src?.errorCount ?? 0,
      currentUrl: src?.currentUrl ?? null,
      failoverIndex: src?.failoverIndex ?? -1,
      failoverAttempts: src?.failoverAttempts ?? 0,
      lastFailoverTime: src?.lastFailoverTime ?? null,
      lastAccess: session?.lastAccess.toISOString() ?? totals?.lastAccess ?? null,
      isOwner: owned !== undefined,
      sourcePid: owned?.sourcePid ?? null,
      transcode: transcodeRuntime(owned?.ownedSource ?? null),
      program: session?.channel.program ?? null,
      channelKbps: session ? channelKbps(session) : null,
    };
  }

  /** Open connections on this worker, with live byte counts. */
  localClients(): ClientRecord[] {
    return [...this.clients.values()].map((c) => ({ ...c, bytesServed: this.clientBytes(c) }));
  }

  forget(id: string): void {
    this.failovers.forget(id);
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
    clearInterval(this.reconcileTimer);
    this.admission.close();
    this.unsubscribe();
    this.failovers.close();
    for (const s of [...this.sessions.values()]) s.stop();
    await Promise.all([...this.clients.values()].map((c) => this.clientGone(c.streamId, c.clientId, 'closed')));
    // Every source's process has exited and its lease is free for the workers that stay.
    await Promise.all([...this.exiting]);
  }

  private assertOpen(): void {
    if (this.closing) throw new AppError(503, 'SHUTTING_DOWN', 'The proxy is shutting down');
  }

  private createSession(def: StreamDefinition, key: string): LiveSession {
    const { config, coordinator, logger, workerId } = this.deps;
    const individual = def.kind === 'transcode' && !this.pooling;
    const session = new LiveSession({
      def, key, coordinator, logger, workerId,
      createSource: (channel, session) => this.createSource(def, key, channel, session),
      connectTimeoutMs: config.connectionTimeoutMs,
      leaseTtlMs: config.leaseTtlMs,
      // A viewer's own FFmpeg has nobody to wait for, and its lease key is used once.
      graceMs: individual ? 0 : config.sharedStreamGraceMs,
      ephemeralLease: individual,
      channelBufferBytes: config.channelBufferBytes,
      channelBufferMs: config.channelBufferMs,
      channelCoalesceMs: config.channelCoalesceMs,
      viewerMaxDrops: config.viewerMaxDrops,
      viewerStallTimeoutMs: config.viewerStallTimeoutMs,
      resolveRelay: (holder) => this.resolveRelay(holder),
      relaySecret: this.deps.relaySecret,
      rereadRelaySecret: this.deps.rereadRelaySecret,
      onClosed: (s) => this.sessionClosed(s),
      onOwnership: () => this.deps.onSourcesChanged?.(),
      onViewerEnd: (clientId, _viewer, reason) => void this.clientGone(def.id, clientId, reason),
      onLeaseEvent: (event) => this.telemetry.lease(event),
      canMoveTo: this.deps.canMoveTo,
    });
    if (this.handingOver) session.handOver();
    return session;
  }

  /** Set by the worker: how an HLS source becomes a TS source (src/streams/hls/). */
  hlsTsSource: ((def: StreamDefinition, channel: Channel) => OwnedSource) | null = null;

  private createSource(def: StreamDefinition, key: string, channel: Channel, session: LiveSession): OwnedSource {
    const { config, logger } = this.deps;
    const common = {
      def, channel, logger,
      maxFailoverAttempts: config.maxFailoverAttempts,
      retryAttempts: config.streamRetryAttempts,
      retryDelayMs: config.streamRetryDelayMs,
      hasViewers: () => session.hasInterest,
      onFailover: (info: FailoverInfo) => void this.publishFailover(def, info),
      onFailed: (error: SourceError) => this.publishFailed(def, error),
      onState: (state: SourceState) => this.failovers.saveState(def.id, state),
      telemetry: this.telemetry,
    };
    if (def.kind === 'hls' && this.hlsTsSource) return this.hlsTsSource(def, channel);
    if (def.transcode) {
      return new FfmpegSource({
        ...common,
        ffmpegPath: config.ffmpegPath,
        // With a resolver, FFmpeg opens the media URL it prints for the primary (run when the
        // source starts); failover inputs are opened as they are.
        argvFor: (d, inputUrl, signal) => d.resolver && inputUrl === d.url
          ? resolveMediaUrl(d, this.resolverEnv, signal).then((media) => this.transcodeArgv(d, media))
          : this.transcodeArgv(d, inputUrl),
        streamId: def.id,
        sourceKey: key,
        killAfterMs: FFMPEG_KILL_AFTER_MS,
        live: kindFromUrl(def.url) !== 'vod',
        onPid: (pid, running) => this.trackPid(pid, running),
      });
    }
    if (def.resolver) {
      return new ResolverSource({
        def, channel, logger, env: this.resolverEnv, killAfterMs: FFMPEG_KILL_AFTER_MS,
        onPid: (pid, running) => this.trackPid(pid, running),
      });
    }
    // Silence and missing-track monitoring (per-stream fields win over SILENCE_*).
    const silence = silenceSettings(def, config);
    let source: HttpSource | null = null;
    const monitor = silence
      ? new SilenceMonitor({
        ffmpegPath: config.ffmpegPath, settings: silence, logger, streamId: def.id,
        onTrigger: (reason) => void source?.switchNow(reason),
      })
      : null;
    source = new HttpSource({
      ...common,
      monitor,
      defaultUserAgent: config.defaultUserAgent,
      connectTimeoutMs: config.connectionTimeoutMs,
      chunkTimeoutMs: config.liveChunkTimeoutMs,
      exponentialBackoff: config.streamRetryExponentialBackoff,
      totalTimeoutMs: config.streamTotalTimeoutMs,
      // An extensionless URL that answers a playlist is played as HLS (API.md §3.1).
      onPlaylist: this.hlsTsSource ? () => this.hlsTsSource!({ ...def, kind: 'hls' }, channel) : undefined,
      onRefused: (url) => stopIdleSourcesToHost(this.sessions.values(), url, key) > 0,
      bitrate: config.bitrateMonitoring
        ? {
          minBytesPerSecond: config.minBitrateThreshold,
          checkIntervalMs: config.bitrateCheckIntervalMs,
          failoverThreshold: config.bitrateFailoverThreshold,
          graceMs: config.bitrateMonitoringGraceMs,
        }
        : null,
    });
    return source;
  }

  /**
   * The pool key viewers of `def` share (DESIGN.md §2): a direct stream's id; for a transcode,
   * `url_only` → the URL, else the argv FFmpeg runs (rendered argv, UA and headers), so two
   * ids that render alike share one FFmpeg. Without pooling each viewer has its own key, and
   * the stream id is reported.
   */
  poolKeyOf(def: StreamDefinition): string {
    if (!def.transcode || !this.pooling) return def.id;
    return this.deps.config.sharingStrategy === 'url_only'
      ? `u${md5(def.url)}`
      : `p${sha256(this.transcodeArgv(def).join('\0')).slice(0, 32)}`;
  }

  /** The argv a transcode's FFmpeg runs: the rendered one plus the stream's UA and headers. */
  /** The argv an FFmpeg of this transcode runs (HLS output: with the managed-directory pattern). */
  ffmpegArgv(def: StreamDefinition): string[] {
    return this.transcodeArgv(def);
  }

  private transcodeArgv(def: StreamDefinition, inputUrl?: string): string[] {
    const argv = withInputOptions(def.transcode!.argv, {
      renderedUrl: def.url,
      ...(inputUrl ? { inputUrl } : {}),
      userAgent: def.userAgent ?? this.deps.config.defaultUserAgent,
      headers: def.headers,
    });
    return confineInput(argv, { tlsVerify: tlsVerifyFor(def, this.deps.config) });
  }

  private get resolverEnv(): ResolverEnv {
    const { config } = this.deps;
    return {
      streamlinkPath: config.streamlinkPath, ytdlpPath: config.ytdlpPath,
      defaultUserAgent: config.defaultUserAgent, timeoutMs: config.resolverTimeoutMs,
    };
  }

  private get pooling(): boolean {
    const { transcodingPooling, sharingStrategy } = this.deps.config;
    return transcodingPooling && sharingStrategy !== 'disabled';
  }

  /**
   * The source key of a transcode viewer: its own FFmpeg without pooling; else the pool key
   * (`url_profile`: the rendered argv; `url_only`: the URL) and the first slot with room.
   */
  private async transcodeKey(def: StreamDefinition, clientId: string): Promise<string> {
    if (!this.pooling) return `v${md5(`${def.id}|${clientId}`).slice(0, 24)}:1`;
    const poolKey = this.poolKeyOf(def);
    const cap = this.deps.config.maxClientsPerSharedStream;
    const choose = async (): Promise<string> => {
      let slot = 1;
      if (cap > 0) {
        const counts = new Map<number, number>();
        for (const c of await this.deps.coordinator.listClients()) {
          if (!c.source?.startsWith(`${poolKey}:`) || c.clientId === clientId) continue;
          const n = splitKey(c.source)[1];
          counts.set(n, (counts.get(n) ?? 0) + 1);
        }
        while ((counts.get(slot) ?? 0) >= cap) slot++;
      }
      const key = `${poolKey}:${slot}`;
      // The viewer counts in its slot from now on, for the next one to choose.
      const record = this.clients.get(`${def.id}:${clientId}`);
      if (record) {
        record.source = key;
        await this.deps.coordinator.putClient(record, this.clientTtlMs);
      }
      return key;
    };
    // One choice at a time per pool key on this worker, so simultaneous viewers see each other.
    const previous = this.slotLocks.get(poolKey) ?? Promise.resolve();
    const next = previous.then(choose, choose);
    this.slotLocks.set(poolKey, next.catch(() => undefined));
    return next;
  }

  /** Records an FFmpeg pid this worker runs (or no longer runs), for the primary to reap. */
  trackPid(pid: number | null, running: boolean): void {
    if (pid === null) return;
    if (running) this.ffmpegPids.add(pid);
    else this.ffmpegPids.delete(pid);
    this.deps.onPids?.([...this.ffmpegPids]);
  }

  private sessionClosed(session: LiveSession): void {
    if (this.sessions.get(session.key) !== session) return;
    this.sessions.delete(session.key);
    const released = session.sourceReleased.finally(() => this.exiting.delete(released));
    this.exiting.add(released);
    if (this.sessionsOf(session.id).length === 0) this.latest.delete(session.id);
    const t = this.totals.get(session.id) ?? { bytesServed: 0, lastAccess: null };
    t.bytesServed += session.bytesServed;
    t.lastAccess = session.lastAccess.toISOString();
    this.totals.set(session.id, t);
    // Viewers whose worker died leave no departure behind (their records are swept): when the
    // session ends, the run ends too if nobody is left (a no-op when a departure ended it).
    void this.deps.events.maybeStopped(session.definition, session.id, 'last_client_disconnected', t.bytesServed);
  }

  private async clientConnected(def: StreamDefinition, clientId: string, who: ViewerIdentity): Promise<void> {
    this.attached.add(`${def.id}:${clientId}`);
    this.telemetry.viewerJoined();
    const { events } = this.deps;
    await events.viewerStarted(def);
    events.emit('client_connected', def.id, {
      client_id: clientId, user_agent: who.userAgent, ip_address: who.ip, username: who.username,
      worker_id: this.deps.workerId, metadata: def.metadata,
    });
  }

  private async clientGone(streamId: string, sentId: string, reason: ViewerEndReason): Promise<void> {
    const clientId = await this.recordIdOf(streamId, sentId);
    const key = `${streamId}:${clientId}`;
    const record = this.clients.get(key);
    const bytes = record ? this.clientBytes(record) : 0;
    this.claimedAs.delete(`${streamId}:${sentId}`);
    if (!record) return;
    this.clients.delete(key);
    const wasAttached = this.attached.delete(key);
    const def = this.defs.get(streamId) ?? null;
    if (![...this.clients.values()].some((c) => c.streamId === streamId)) this.defs.delete(streamId);
    await this.coordinatorWrite(() => this.deps.coordinator.deleteClient(streamId, clientId));
    const { events } = this.deps;
    if (wasAttached) {
      this.telemetry.viewerLeft(reason);
      events.emit('client_disconnected', streamId, {
        client_id: clientId, bytes_served: bytes, segments_served: 0, reason, metadata: def?.metadata ?? {},
      });
    }
    // At once when the cluster-wide count reaches 0 (not after the source's grace).
    await events.maybeStopped(def, streamId, 'last_client_disconnected', this.runtime(streamId).bytesServed);
  }

  private clientBytes(record: ClientRecord): number {
    const key = record.source ?? directKey(record.streamId);
    const viewer = this.sessions.get(key)?.viewers.get(this.sentIdOf(record));
    return viewer ? viewer.bytesSent : record.bytesServed;
  }

  /** The id a record's connection was answered with (its viewer's key in the session). */
  private sentIdOf(record: ClientRecord): string {
    for (const [key, id] of this.claimedAs) {
      if (id === record.clientId && key.startsWith(`${record.streamId}:`)) return key.slice(record.streamId.length + 1);
    }
    return record.clientId;
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
    this.telemetry.failover(info.reason);
    const clients = await this.deps.coordinator.listClients(def.id).then((c) => c.length, () => this.runtime(def.id).clientCount);
    this.deps.events.emit('failover_triggered', def.id, {
      old_url: info.oldUrl, new_url: info.newUrl, failover_index: info.failoverIndex,
      attempt_number: info.attemptNumber, reason: info.reason, client_count: clients, metadata: def.metadata,
    });
  }

  private publishFailed(def: StreamDefinition, error: SourceError): void {
    this.deps.events.emit('stream_failed', def.id, {
      error: error.message, error_type: error.reason, reason: error.reason, retry_count: error.retryCount,
      status_code: error.statusCode, metadata: def.metadata,
    });
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

/** The silence monitor's settings for a stream, or null when it is off for it. */
function silenceSettings(def: StreamDefinition, config: Config): SilenceSettings | null {
  const o = def.options;
  const num = (name: string, fallback: number, scale = 1): number =>
    typeof o[name] === 'number' ? (o[name] as number) * scale : fallback;
  const on = typeof o.enable_silence_detection === 'boolean' ? o.enable_silence_detection : config.silenceDetection;
  if (!on || def.kind !== 'live') return null;
  return {
    thresholdDb: num('silence_threshold_db', config.silenceThresholdDb),
    durationMs: Math.max(100, num('silence_duration', config.silenceDurationMs, 1000)),
    checkIntervalMs: Math.max(100, num('silence_check_interval', config.silenceCheckIntervalMs, 1000)),
    failoverThreshold: Math.max(1, num('silence_failover_threshold', config.silenceFailoverThreshold)),
    graceMs: num('silence_monitoring_grace_period', config.silenceMonitoringGraceMs, 1000),
  };
}

/** `{pool_key}:{slot}` → its parts. */
function splitKey(key: string): [string, number] {
  const i = key.lastIndexOf(':');
  return [key.slice(0, i), Number(key.slice(i + 1)) || 1];
}

/** Average kbit/s into the session's channel since it started (null before any byte). */
function channelKbps(session: LiveSession): number | null {
  const seconds = (Date.now() - session.startedAt.getTime()) / 1000;
  return session.channel.bytesIn > 0 && seconds > 0 ? (session.channel.bytesIn * 8) / 1000 / seconds : null;
}

function transcodeRuntime(source: OwnedSource | null): TranscodeRuntime | null {
  if (!(source instanceof FfmpegSource)) return null;
  const p = source.progress;
  return { fps: p.fps, speed: p.speed, bitrate_kbps: p.bitrateKbps, frame: p.frame, dropped_frames: p.droppedFrames };
}
