// One HTTP worker: the coordinator it is given, the stream engine, the express app, the
// internal relay listener and the heartbeat. The cluster primary forks these.
import http from 'node:http';
import type { Socket } from 'node:net';
import { hostname } from 'node:os';
import type { Config } from './config.js';
import type { Coordinator, ResetReason, WorkerRecord } from './coordination/coordinator.js';
import { Heartbeat } from './coordination/heartbeat.js';
import { sharedSecret } from './coordination/shared-secret.js';
import { detectToolVersions, type ToolVersions } from './ffmpeg/tool-versions.js';
import { createApp } from './http/app.js';
import { SocketHandoff, type HandoffMessage } from './http/socket-handoff.js';
import { setUpstreamTlsVerify } from './streams/sources/upstream.js';
import { answerClientErrorsAsJson } from './http/client-error.js';
import { UrlSigner } from './http/url-signer.js';
import type { Logger } from './logger.js';
import type { StreamDefinition } from './streams/stream-definition.js';
import { renderAggregate } from './metrics/aggregate.js';
import { WorkerMetrics } from './metrics/worker-metrics.js';
import { BroadcastManager } from './streams/broadcast/broadcast-manager.js';
import { BroadcastService } from './streams/broadcast/broadcast-service.js';
import { createRelayServer } from './streams/live/relay-server.js';
import { StreamEvents } from './streams/events/stream-events.js';
import { WebhookDispatcher } from './streams/events/webhook-dispatcher.js';
import { HlsEngine } from './streams/hls/hls-engine.js';
import { StreamEngine } from './streams/stream-engine.js';
import { StreamService } from './streams/stream-service.js';
import { Transcoder } from './streams/transcode/transcoder.js';
import type { StreamTelemetry } from './streams/stream-telemetry.js';
import { QuietGc } from './quiet-gc.js';
import { reportLoad, type WorkerLoadMessage } from './worker-load.js';

/** A worker holding this many live viewers or more is not stopped for a full collection. */
const QUIET_GC_MAX_VIEWERS = 100;

export interface WorkerDeps {
  config: Config;
  logger: Logger;
  coordinator: Coordinator;
  workerId: string;
  /** 1-based slot of this worker (offsets RELAY_PORT when it is set). */
  index?: number;
  /** Workers the deployment expects on this host (for /health). */
  expectedWorkers?: number;
  /** Set by startWorker: an early heartbeat when owned sources change. */
  onSourcesChanged?: () => Promise<void>;
  /**
   * The text `GET /metrics` answers, given this worker's metrics: in the cluster the primary
   * gathers every worker's; by default this worker's alone.
   */
  scrapeMetrics?: (own: WorkerMetrics) => Promise<string>;
  /**
   * The cluster IPC (process.send): the worker reports its load to the primary
   * (src/worker-load.ts), and live viewers may move to the worker that owns their source
   * (VIEWER_HANDOFF). Unset outside a cluster.
   */
  ipcSend?: (msg: HandoffMessage | WorkerLoadMessage, handle?: Socket, options?: { keepOpen: boolean }, cb?: (err: Error | null) => void) => boolean;
  /**
   * The cluster primary accepts on PORT and passes connections in (`accept`): this worker does
   * not listen there itself (src/primary/connection-dispatcher.ts).
   */
  acceptFromPrimary?: boolean;
}

/** A source handed over in a rolling restart: its key and stream definition. */
export interface AdoptedSession {
  key: string;
  def: StreamDefinition;
}

export interface RunningWorker {
  server: http.Server;
  relayServer: http.Server;
  engine: StreamEngine;
  app: ReturnType<typeof createApp>;
  /** This worker's metrics (the cluster primary collects them over IPC). */
  metrics: WorkerMetrics;
  /** PORT as bound (as configured when the primary listens). */
  port: number;
  /** Serves a connection the primary accepted (acceptFromPrimary); `head`: what the primary read of it (base64). */
  accept(socket: Socket, head?: unknown): void;
  relayAddress: string;
  heartbeat: Heartbeat;
  /** Stops accepting, lets viewers finish up to `drainMs`, then stops everything. */
  close(drainMs?: number): Promise<void>;
  /** Rolling restart, old side: stops accepting; the sources it owns, for its replacement. */
  handOver(): AdoptedSession[];
  /** Rolling restart, old side: stops its sources and frees their leases (viewers stay, relayed). */
  releaseSources(): void;
  /** Rolling restart, new side: takes over the sources the old worker gives up. */
  adopt(sessions: AdoptedSession[]): void;
  /** Viewer hand-off between this host's workers; null when off or outside a cluster. */
  handoff: SocketHandoff | null;
}

const once = <T>(fn: () => Promise<T>): (() => Promise<T>) => {
  let p: Promise<T> | null = null;
  return () => (p ??= fn().catch((err: unknown) => {
    p = null; // a coordinator hiccup must not poison the cache
    throw err;
  }));
};

const FLUSH_EVENTS_MS = 2000;

/** Builds a worker's parts without listening (tests use the app with supertest). */
export function buildWorker(deps: WorkerDeps) {
  const { config, logger, coordinator, workerId } = deps;
  setUpstreamTlsVerify(config.upstreamTlsVerify);
  const relaySecret = sharedSecret(coordinator, 'relay_secret');
  const signingSecret = sharedSecret(coordinator, 'url_signing_secret');
  // The primary kills these if this worker dies (FFmpeg would also die of a broken pipe).
  // Streams and broadcasts report their own sets; the primary gets the union.
  const pidSets = { streams: [] as number[], broadcasts: [] as number[] };
  const report = (which: keyof typeof pidSets) => (pids: number[]): void => {
    pidSets[which] = pids;
    void process.send?.({ t: 'worker:pids', pids: [...pidSets.streams, ...pidSets.broadcasts] });
  };
  const onPids = report('streams');
  // Owned sources show in the workers hash at once, not at the next heartbeat.
  let beatSoon: NodeJS.Timeout | null = null;
  const onSourcesChanged = (): void => {
    beatSoon ??= setTimeout(() => {
      beatSoon = null;
      void deps.onSourcesChanged?.();
    }, 50);
  };
  const metrics = new WorkerMetrics({ worker: String(deps.index ?? 1), rootPath: config.rootPath });
  // A viewer that left ends its short-lived state here: once they stop leaving and few are
  // left, one full collection gives their memory back (src/quiet-gc.ts).
  const quietGc = new QuietGc({ when: () => engine.admission.load().viewers < QUIET_GC_MAX_VIEWERS });
  const telemetry: StreamTelemetry = {
    ...metrics.telemetry,
    viewerLeft: (reason) => {
      metrics.telemetry.viewerLeft(reason);
      quietGc.note();
    },
  };
  const dispatcher = new WebhookDispatcher({ coordinator, logger });
  const events = new StreamEvents({ coordinator, logger, dispatcher });
  const engine: StreamEngine = new StreamEngine({
    config, coordinator, logger, workerId, relaySecret, rereadRelaySecret: () => relaySecret.reread(), events, onPids, onSourcesChanged, telemetry,
    canMoveTo: (owner: string): boolean => handoff?.shouldMove(owner, engine.admission.load().viewers) ?? false,
  });
  const service = new StreamService({ config, coordinator, engine, events });
  const hls = new HlsEngine({
    config, coordinator, logger, workerId, engine, relaySecret, onSourcesChanged,
    resolveRelay: (holder) => engine.resolveRelay(holder),
  });
  engine.hlsTsSource = (def, channel) => hls.tsSource(def, channel);
  // One signer per secret value: a value re-agreed after the coordinator lost it takes effect.
  let signerFor: { secret: string; signer: UrlSigner } | null = null;
  const signer = async (): Promise<UrlSigner> => {
    const s = config.urlSigningSecret ?? (await signingSecret());
    if (signerFor?.secret !== s) signerFor = { secret: s, signer: new UrlSigner(s, config.signedUrlTtlMs) };
    return signerFor.signer;
  };
  const versions: () => Promise<ToolVersions> = once(() => detectToolVersions(config));
  void versions(); // detected at start: /info and resolver streams need them
  const transcoder = new Transcoder({ config, logger, telemetry });
  metrics.attach({ engine, transcoder, coordinator, hls, webhooks: dispatcher });
  const handoff: SocketHandoff | null = deps.ipcSend && config.viewerHandoff
    ? new SocketHandoff({
      workerId, send: deps.ipcSend, logger, onMove: telemetry.viewerMoved,
      spreadFrom: config.viewerHandoffSpreadFrom,
    })
    : null;
  const stopLoadReport = deps.ipcSend ? reportLoad({ workerId, load: () => engine.admission.load(), send: deps.ipcSend }) : null;
  const scrape = deps.scrapeMetrics ?? (async (own: WorkerMetrics) => renderAggregate([await own.json()]));
  let broadcasts: BroadcastService | null = null;
  const broadcastManager = new BroadcastManager({
    config, logger,
    render: (input) => transcoder.renderBroadcast(input),
    onPids: report('broadcasts'),
    metrics: metrics.broadcastHooks,
    isRegistered: async (id) => (broadcasts ? broadcasts.isRegistered(id) : false),
  });
  void broadcastManager.init();
  broadcasts = new BroadcastService({ config, logger, coordinator, workerId, manager: broadcastManager, relaySecret });
  const app = createApp({
    config, logger, coordinator, engine, service, signer, workerId, versions, transcoder, dispatcher, hls, broadcasts, handoff: handoff ?? undefined,
    startedAt: new Date(),
    expectedWorkers: deps.expectedWorkers ?? 1,
    metrics: { httpMiddleware: metrics.httpMiddleware, scrape: () => scrape(metrics) },
  });
  return {
    app, engine, hls, service, signer, relaySecret, dispatcher, metrics, broadcasts, handoff,
    /** Offers the cached shared secrets to a coordinator that lost them. */
    republishSecrets: () => Promise.all([relaySecret.republish(), config.urlSigningSecret ? undefined : signingSecret.republish()]),
    closeParts: async () => {
      stopLoadReport?.();
      handoff?.close();
      quietGc.close();
      await dispatcher.flush(FLUSH_EVENTS_MS); // the last stream_stopped events still go out
      dispatcher.close();
      await transcoder.close();
    },
  };
}

/** `exclusive`: this worker's own socket, not one shared through the cluster primary. */
function listen(server: http.Server, host: string, port: number, exclusive = false): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // A large backlog: a burst of players connecting at once is admitted without waiting.
    server.listen({ host, port, backlog: 4096, exclusive }, () => {
      server.off('error', reject);
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : port);
    });
  });
}

export async function startWorker(deps: WorkerDeps): Promise<RunningWorker> {
  const { config, logger, coordinator, workerId } = deps;
  let heartbeat: Heartbeat | null = null;
  const { app, engine, hls, relaySecret, metrics, broadcasts, handoff, republishSecrets, closeParts } = buildWorker({ ...deps, onSourcesChanged: async () => heartbeat?.beat() });
  const startedAt = new Date().toISOString();

  const relayServer = createRelayServer({
    engine, secret: relaySecret, rereadSecret: () => relaySecret.reread(), logger,
    extra: async (req, res) => (await broadcasts.handleRelay(req, res)) || hls.handleRelay(req, res),
  });
  const relayPort = config.relayPort > 0 ? config.relayPort + (deps.index ?? 1) - 1 : 0;
  const boundRelayPort = await listen(relayServer, config.relayHost, relayPort, true);
  const relayAddress = `${config.relayAdvertiseHost}:${boundRelayPort}`;

  const record = (): WorkerRecord => {
    const stats = engine.workerStats();
    return {
      workerId, pid: process.pid, host: hostname(), startedAt, lastSeen: new Date().toISOString(),
      sources: stats.sources, viewers: stats.viewers, relay: relayAddress, relays: stats.relays,
      sourceDetails: engine.ownedSources().map((o) => ({
        key: `${o.poolKey}:${o.slot}`, streamId: o.streamId, clients: o.clientCount, pid: o.pid,
        startedAt: o.startedAt, fps: o.transcode?.fps ?? null, speed: o.transcode?.speed ?? null,
      })),
    };
  };
  heartbeat = new Heartbeat({
    coordinator, record,
    intervalMs: config.heartbeatIntervalMs,
    cleanupIntervalMs: config.cleanupIntervalMs,
    onError: (what, err) => logger.warn(`${what} failed`, { error: String(err) }),
    onSwept: (ids) => logger.info('swept stale workers', { workers: ids }),
  });
  // Known (with its relay address) before it serves anything.
  await heartbeat.start();

  // The store lost what this worker wrote (Redis restarted empty, or this worker was swept
  // while cut off): write it all again at once, not at the next heartbeat or client refresh.
  const hb = heartbeat;
  const republish = async (reason: ResetReason): Promise<void> => {
    const t0 = Date.now();
    await republishSecrets().catch((err: unknown) => logger.warn('secrets not republished', { error: String(err) }));
    await hb.beat();
    await engine.republish(reason === 'store_lost');
    logger.info('worker state published again', { reason, ms: Date.now() - t0 });
  };
  const offReset = coordinator.onReset?.((reason) => void republish(reason)) ?? (() => undefined);

  const server = http.createServer({ keepAliveTimeout: 5000, requestTimeout: 0 }, app);
  answerClientErrorsAsJson(server);
  let port = config.port;
  if (deps.acceptFromPrimary) {
    // Node starts its header timeouts on 'listening' (a slow client must not hold a connection
    // here); this server gets its connections from the primary and never listens.
    server.emit('listening');
  } else {
    port = await listen(server, config.host, config.port);
  }
  handoff?.serveOn(server);
  logger.info('worker listening', { host: config.host, port, relay: relayAddress });

  return {
    server, relayServer, engine, app, metrics, port, relayAddress, heartbeat, handoff,
    accept(socket, head) {
      // A reset before the server took the socket must not be an unhandled 'error'.
      socket.on('error', () => socket.destroy());
      // Read back first: the server parses it as the connection's first bytes.
      if (typeof head === 'string' && head) socket.unshift(Buffer.from(head, 'base64'));
      server.emit('connection', socket);
    },
    handOver() {
      handoff?.close();
      server.close();
      return engine.ownedSessions();
    },
    releaseSources() {
      engine.handOver();
    },
    adopt(sessions) {
      for (const s of sessions) {
        if (typeof s?.key === 'string' && typeof s.def?.id === 'string') engine.adopt(s.def, s.key);
      }
    },
    async close(drainMs = 0) {
      offReset();
      handoff?.close();
      server.close();
      await engine.drain(drainMs);
      await engine.close();
      await hls.close();
      await broadcasts.close();
      await heartbeat.stop();
      await closeParts();
      relayServer.close();
      relayServer.closeAllConnections();
      server.closeAllConnections();
    },
  };
}
