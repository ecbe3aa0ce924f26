// One worker's metrics. Events (joins, departures, connects, exits, leases, renders, HTTP
// requests) are counted as they happen, once per event. Everything per chunk or per viewer
// byte stays in the plain fields of the channel, viewer and source objects and is read here
// only when a scrape asks (refresh()), so the fan-out pays nothing for metrics.
import { performance } from 'node:perf_hooks';
import type { NextFunction, Request, Response } from 'express';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { Coordinator } from '../coordination/coordinator.js';
import type { BroadcastMetricsHooks } from '../streams/broadcast/broadcast-manager.js';
import type { StreamEngine } from '../streams/stream-engine.js';
import type { StreamTelemetry } from '../streams/stream-telemetry.js';
import type { Transcoder } from '../streams/transcode/transcoder.js';
import { registryJson, type MetricsJson } from './aggregate.js';
import {
  BROADCAST_CALLBACK_EVENTS, BROADCAST_CALLBACK_RESULTS, DEFAULT_METRICS_OPTIONS,
  FAILOVER_REASONS, FFMPEG_EXIT_REASONS, START_KINDS, STREAM_STATES, STREAMING_ROUTES, UPSTREAM_ERROR_REASONS,
  VIEWER_END_REASONS, WORKER_METRICS as M,
} from './definitions.js';
import { counter, gauge, histogram, within, zeroes } from './metric-factory.js';

export interface WorkerMetricsParts {
  engine: StreamEngine;
  transcoder: Transcoder;
  coordinator: Coordinator;
  /** Webhook delivery figures (plain counters in the dispatcher). */
  webhooks?: { stats(): { queued: number; in_flight: number; delivered: number; failed: number; dropped: number; retries: number } };
  /** HLS sessions (viewers poll; no bytes per chunk here): viewers and owner/relay state. */
  hls?: { allSessions(): Iterable<{ id: string; key: string; viewers: { size: number }; isOwner: boolean }> };
}

const PING_TIMEOUT_MS = 1000;

interface StreamFigures {
  viewers: number;
  egress: number;
  /** Bytes the channel rings hold (owner and relay workers). */
  buffer: number;
  /** Block memory of its rings (stream_buffer_reserved_bytes). */
  reserved: number;
  upstream: number;
  rate: number;
  cc: number;
  reconnects: number;
  owner: boolean;
  relay: boolean;
  /** Fed as MPEG-TS (live channel): the byte and packet series apply. */
  ts: boolean;
}

/** `{pool_key}:{slot}` → the slot. */
const slotOf = (key: string): string => key.slice(key.lastIndexOf(':') + 1);

function createMetrics(r: Registry) {
  return {
    streamViewers: gauge(M.streamViewers, r),
    streams: gauge(M.streams, r),
    sourceViewers: gauge(M.sourceViewers, r),
    streamEgressBytes: counter(M.streamEgressBytes, r),
    streamUpstreamBytes: counter(M.streamUpstreamBytes, r),
    streamUpstreamRate: gauge(M.streamUpstreamRate, r),
    streamBufferBytes: gauge(M.streamBufferBytes, r),
    streamBufferReservedBytes: gauge(M.streamBufferReservedBytes, r),
    streamCcErrors: counter(M.streamCcErrors, r),
    streamReconnects: counter(M.streamReconnects, r),
    viewerJoins: counter(M.viewerJoins, r),
    viewerDepartures: counter(M.viewerDepartures, r),
    viewerHandoffs: counter(M.viewerHandoffs, r),
    timeToFirstByte: histogram(M.timeToFirstByte, r),
    upstreamConnects: counter(M.upstreamConnects, r),
    upstreamErrors: counter(M.upstreamErrors, r),
    failovers: counter(M.failovers, r),
    ffmpegProcesses: gauge(M.ffmpegProcesses, r),
    ffmpegStarts: counter(M.ffmpegStarts, r),
    ffmpegExits: counter(M.ffmpegExits, r),
    transcodeSpeed: gauge(M.transcodeSpeed, r),
    transcodeFps: gauge(M.transcodeFps, r),
    transcodeDroppedFrames: counter(M.transcodeDroppedFrames, r),
    sourcesOwned: gauge(M.sourcesOwned, r),
    relayConnections: gauge(M.relayConnections, r),
    leaseAcquires: counter(M.leaseAcquires, r),
    leaseRenewals: counter(M.leaseRenewals, r),
    leaseLosses: counter(M.leaseLosses, r),
    renderPoolUtilization: gauge(M.renderPoolUtilization, r),
    renderPoolThreads: gauge(M.renderPoolThreads, r),
    renderPoolQueue: gauge(M.renderPoolQueue, r),
    renderTaskDuration: histogram(M.renderTaskDuration, r),
    httpRequests: counter(M.httpRequests, r),
    httpRequestDuration: histogram(M.httpRequestDuration, r),
    webhookDeliveries: counter(M.webhookDeliveries, r),
    webhookRetries: counter(M.webhookRetries, r),
    webhookQueue: gauge(M.webhookQueue, r),
    coordinatorUp: gauge(M.coordinatorUp, r),
    broadcastsRunning: gauge(M.broadcastsRunning, r),
    broadcastSegments: counter(M.broadcastSegments, r),
    broadcastCallbacks: counter(M.broadcastCallbacks, r),
  };
}

export class WorkerMetrics {
  readonly registry = new Registry();
  readonly telemetry: StreamTelemetry;
  private parts: WorkerMetricsParts | null = null;
  private readonly worker: string;
  private readonly m: ReturnType<typeof createMetrics>;

  /** `worker`: this worker's slot number on its host (the `worker` label). */
  constructor(opts: { worker: string; rootPath: string }) {
    const r = this.registry;
    this.worker = opts.worker;
    collectDefaultMetrics({ ...DEFAULT_METRICS_OPTIONS, register: r, labels: { worker: opts.worker } });
    const m = createMetrics(r);
    this.m = m;
    m.viewerJoins.inc(0);
    zeroes(m.viewerDepartures, 'reason', VIEWER_END_REASONS);
    zeroes(m.viewerHandoffs, 'direction', ['out', 'in']);
    zeroes(m.upstreamConnects, 'result', ['ok', 'error']);
    zeroes(m.upstreamErrors, 'reason', UPSTREAM_ERROR_REASONS);
    zeroes(m.failovers, 'reason', FAILOVER_REASONS);
    m.ffmpegStarts.inc(0);
    zeroes(m.ffmpegExits, 'reason', FFMPEG_EXIT_REASONS);
    zeroes(m.leaseAcquires, 'result', ['acquired', 'busy']);
    m.leaseRenewals.inc(0);
    m.leaseLosses.inc(0);
    for (const start of START_KINDS) m.timeToFirstByte.zero({ start });
    m.renderTaskDuration.zero({});
    m.broadcastsRunning.set({ worker: opts.worker }, 0);
    m.broadcastSegments.inc(0);
    for (const event of BROADCAST_CALLBACK_EVENTS) zeroes(m.broadcastCallbacks, 'result', BROADCAST_CALLBACK_RESULTS, { event });
    this.broadcastHooks = {
      running: (delta) => m.broadcastsRunning.inc({ worker: opts.worker }, delta),
      segmentWritten: () => m.broadcastSegments.inc(),
      callback: (event, result) => m.broadcastCallbacks.inc({ event, result }),
    };

    this.telemetry = {
      viewerJoined: () => m.viewerJoins.inc(),
      viewerLeft: (reason) => m.viewerDepartures.inc({ reason }),
      viewerMoved: (direction) => m.viewerHandoffs.inc({ direction }),
      firstByte: (start, seconds) => m.timeToFirstByte.observe({ start }, seconds),
      upstreamConnected: (ok) => m.upstreamConnects.inc({ result: ok ? 'ok' : 'error' }),
      upstreamError: (reason) => m.upstreamErrors.inc({ reason }),
      failover: (reason) => m.failovers.inc({ reason }),
      ffmpegStarted: () => m.ffmpegStarts.inc(),
      ffmpegExited: (reason) => m.ffmpegExits.inc({ reason }),
      lease: (event) => {
        if (event === 'acquired' || event === 'busy') m.leaseAcquires.inc({ result: event });
        else if (event === 'renewed') m.leaseRenewals.inc();
        else m.leaseLosses.inc();
      },
      rendered: (seconds) => m.renderTaskDuration.observe(seconds),
    };
    this.httpMiddleware = this.makeHttpMiddleware(opts.rootPath);
  }

  /** Counters the broadcast manager feeds (runs, segments, callbacks). */
  readonly broadcastHooks: BroadcastMetricsHooks;

  /** Counts every request by route template, method and status; times all but byte streams. */
  readonly httpMiddleware: (req: Request, res: Response, next: NextFunction) => void;

  /** The parts whose plain fields a scrape reads (set once the worker is built). */
  attach(parts: WorkerMetricsParts): void {
    this.parts = parts;
  }

  /** This worker's metrics as data, fresh: the scrape-time figures are read now. */
  async json(): Promise<MetricsJson> {
    await this.refresh();
    return registryJson(this.registry);
  }

  private makeHttpMiddleware(rootPath: string) {
    const { httpRequests, httpRequestDuration } = this.m;
    // The routes are mounted under ROOT_PATH and at `/`: a request that falls through the
    // first mount passes here twice, and counts once.
    const seen = new WeakSet<Request>();
    return (req: Request, res: Response, next: NextFunction): void => {
      if (seen.has(req)) return next();
      seen.add(req);
      const t0 = performance.now();
      res.once('close', () => {
        // Moved to the worker that owns the stream (socket-handoff.ts): counted there.
        if (res.locals.handedOff === true) return;
        // Template, never the path: `/streams/:id`, whichever base path it came under.
        let route = 'unmatched';
        if (req.route) {
          const base = rootPath && req.baseUrl.startsWith(rootPath) ? req.baseUrl.slice(rootPath.length) : req.baseUrl;
          route = `${base}${String(req.route.path)}`;
        }
        const method = req.method;
        httpRequests.inc({ route, method, status: res.headersSent ? String(res.statusCode) : 'aborted' });
        if (!STREAMING_ROUTES.has(route)) httpRequestDuration.observe({ route, method }, (performance.now() - t0) / 1000);
      });
      next();
    };
  }

  /** Reads the scrape-time figures; every per-stream series is rebuilt, so stopped streams vanish. */
  private async refresh(): Promise<void> {
    const { m, worker } = this;
    const parts = this.parts;
    if (!parts) return;
    const { engine, transcoder, coordinator } = parts;
    const streams = new Map<string, StreamFigures>();
    const figures = (id: string): StreamFigures => {
      let f = streams.get(id);
      if (!f) {
        f = { viewers: 0, egress: 0, buffer: 0, reserved: 0, upstream: 0, rate: 0, cc: 0, reconnects: 0, owner: false, relay: false, ts: false };
        streams.set(id, f);
      }
      return f;
    };
    const perStream = [m.streamViewers, m.sourceViewers, m.streamEgressBytes, m.streamUpstreamBytes, m.streamUpstreamRate,
      m.streamBufferBytes, m.streamBufferReservedBytes, m.streamCcErrors, m.streamReconnects, m.transcodeSpeed, m.transcodeFps, m.transcodeDroppedFrames];
    for (const metric of perStream) metric.reset();

    for (const s of engine.liveSessions()) {
      const f = figures(s.id);
      f.ts = true;
      f.viewers += s.viewers.size;
      f.egress += s.bytesServed;
      f.buffer += s.channel.bufferedBytes;
      f.reserved += s.channel.reservedBytes;
      m.sourceViewers.inc({ stream_id: s.id, slot: slotOf(s.key) }, s.viewers.size);
      if (s.isOwner) {
        f.owner = true;
        f.upstream += s.ownedSource?.bytesIn ?? 0;
        f.rate += s.inRate;
        f.cc += s.channel.ccErrors;
        f.reconnects += s.failoverPlan?.errorCount ?? 0;
      } else if (s.isRelaying) {
        f.relay = true;
      }
    }
    for (const h of parts.hls?.allSessions() ?? []) {
      const f = figures(h.id);
      f.viewers += h.viewers.size;
      m.sourceViewers.inc({ stream_id: h.id, slot: slotOf(h.key) }, h.viewers.size);
      if (h.isOwner) f.owner = true;
      else f.relay = true; // reads through the owner
    }
    const states: Record<(typeof STREAM_STATES)[number], number> = { owner: 0, relay: 0, starting: 0, vod: 0 };
    for (const [id, f] of streams) {
      states[f.owner ? 'owner' : f.relay ? 'relay' : 'starting']++;
      const stream_id = { stream_id: id };
      m.streamViewers.set(stream_id, f.viewers);
      if (!f.ts) continue;
      m.streamEgressBytes.inc(stream_id, f.egress);
      m.streamBufferBytes.set(stream_id, f.buffer);
      m.streamBufferReservedBytes.set(stream_id, f.reserved);
      if (!f.owner) continue;
      m.streamUpstreamBytes.inc(stream_id, f.upstream);
      m.streamUpstreamRate.set(stream_id, f.rate);
      m.streamCcErrors.inc(stream_id, f.cc);
      m.streamReconnects.inc(stream_id, f.reconnects);
    }
    for (const vod of engine.vodFigures()) {
      states.vod++;
      const stream_id = { stream_id: vod.streamId };
      m.streamViewers.inc(stream_id, vod.viewers);
      m.streamEgressBytes.inc(stream_id, vod.bytesServed);
    }
    for (const state of STREAM_STATES) m.streams.set({ state }, states[state]);

    for (const o of engine.ownedSources()) {
      const t = o.transcode;
      if (!t) continue;
      const labels = { stream_id: o.streamId, slot: String(o.slot) };
      // Unknown until FFmpeg prints its first stats line: no series rather than a false 0.
      if (t.speed !== null) m.transcodeSpeed.set(labels, t.speed);
      if (t.fps !== null) m.transcodeFps.set(labels, t.fps);
      m.transcodeDroppedFrames.inc(labels, t.dropped_frames ?? 0);
    }

    const w = { worker };
    const stats = engine.workerStats();
    m.sourcesOwned.set(w, stats.sources.length);
    m.relayConnections.set({ worker, direction: 'serving' }, stats.relays.serving);
    m.relayConnections.set({ worker, direction: 'receiving' }, stats.relays.receiving);
    m.ffmpegProcesses.set(w, engine.ffmpegProcessCount);
    const pool = transcoder.poolStats();
    m.renderPoolUtilization.set(w, pool?.utilization ?? 0);
    m.renderPoolThreads.set(w, pool?.threads ?? 0);
    m.renderPoolQueue.set(w, pool?.queued ?? 0);
    const hooks = parts.webhooks?.stats() ?? { queued: 0, in_flight: 0, delivered: 0, failed: 0, dropped: 0, retries: 0 };
    m.webhookDeliveries.reset();
    m.webhookRetries.reset();
    for (const result of ['delivered', 'failed', 'dropped'] as const) m.webhookDeliveries.inc({ result }, hooks[result]);
    m.webhookRetries.inc(hooks.retries);
    m.webhookQueue.set({ state: 'queued' }, hooks.queued);
    m.webhookQueue.set({ state: 'in_flight' }, hooks.in_flight);
    const up = await within(coordinator.ping(), PING_TIMEOUT_MS, false);
    m.coordinatorUp.reset();
    m.coordinatorUp.set({ worker, backend: coordinator.backend }, up ? 1 : 0);
  }
}
