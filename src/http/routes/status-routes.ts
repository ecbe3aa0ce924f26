// Read-only views of the service (API.md §3.5) and the connection test.
import { Router, type Request, type Response } from 'express';
import type { Config } from '../../config.js';
import type { Coordinator } from '../../coordination/coordinator.js';
import { staleWorkers } from '../../coordination/heartbeat.js';
import type { Transcoder } from '../../streams/transcode/transcoder.js';
import type { ToolVersions } from '../../ffmpeg/tool-versions.js';
import { redactUrl } from '../../redact.js';
import type { StreamEngine } from '../../streams/stream-engine.js';
import { clientJson, type Snapshot, type StreamService } from '../../streams/stream-service.js';
import { openUpstream } from '../../streams/sources/upstream.js';
import { VERSION } from '../../version.js';
import { parseBody, testConnectionSchema } from '../schemas.js';

export interface StatusRoutesDeps {
  config: Config;
  coordinator: Coordinator;
  service: StreamService;
  engine: StreamEngine;
  workerId: string;
  startedAt: Date;
  versions: () => Promise<ToolVersions>;
  expectedWorkers: number;
  transcoder: Transcoder;
}

const TEST_TIMEOUT_MS = 5000;

export function statusRoutes(deps: StatusRoutesDeps): Router {
  const { config, coordinator, service, workerId } = deps;
  const r = Router();
  const workers = async (): Promise<{ alive: number }> => {
    const all = await coordinator.listWorkers();
    return { alive: all.length - staleWorkers(all, config.heartbeatIntervalMs).length };
  };
  const uptime = (): number => Math.round((Date.now() - deps.startedAt.getTime()) / 1000);

  const stats = async (snap?: Snapshot) => {
    const totals = await service.totals(snap);
    return {
      ...totals,
      uptime_seconds: uptime(),
      pooling: {
        enabled: config.transcodingPooling && config.sharingStrategy !== 'disabled',
        strategy: config.sharingStrategy,
        max_clients_per_stream: config.maxClientsPerSharedStream,
      },
    };
  };

  r.get('/', async (_req, res) => {
    const { streams: _s, clients: _c, ...top } = await stats();
    res.json({ status: 'running', message: 'm3u-proxy is running', version: VERSION, uptime: uptime(), stats: top });
  });

  r.get('/health', async (_req, res) => {
    // Degraded, not an error, when the coordinator is down: health checks must get an answer.
    const [ok, s, alive] = await Promise.all([
      coordinator.ping().catch(() => false),
      stats().catch(() => null),
      workers().then((w) => w.alive).catch(() => 0),
    ]);
    const healthy = ok && alive > 0;
    const { streams: _s, clients: _c, ...top } = s ?? { streams: [], clients: [] };
    res.status(healthy ? 200 : 503).json({
      status: healthy ? 'healthy' : 'degraded',
      root_path: config.rootPath,
      version: VERSION,
      uptime_seconds: uptime(),
      active_streams: s?.active_streams ?? null,
      active_clients: s?.active_clients ?? null,
      total_bytes_served: s?.total_bytes_served ?? null,
      stats: s ? top : null,
      workers: { expected: deps.expectedWorkers, alive },
      coordinator: { backend: coordinator.backend === 'redis' ? 'redis' : 'embedded', ok },
    });
  });

  r.get('/stats', async (_req, res) => {
    res.json(await stats());
  });

  r.get('/stats/streams', async (_req, res) => {
    const streams = await service.entries();
    res.json({ total_streams: streams.length, streams });
  });

  const clients = async (_req: Request, res: Response): Promise<void> => {
    const list = (await service.snapshot()).clients.map(clientJson);
    res.json({ clients: list, total_clients: list.length });
  };
  r.get('/clients', clients);
  r.get('/stats/clients', clients);

  // Every source in the cluster, from the owners' heartbeats (this worker's own are live).
  r.get('/stats/pooled', async (_req, res) => {
    const snap = await service.snapshot();
    const [s, workersList] = await Promise.all([stats(snap), coordinator.listWorkers()]);
    const clients = snap.clients;
    const others = workersList.filter((w) => w.workerId !== workerId);
    // Viewers per source, cluster-wide (a direct stream's only source is `{id}:1`).
    const perSource = new Map<string, number>();
    for (const c of clients) {
      const key = c.source ?? `${c.streamId}:1`;
      perSource.set(key, (perSource.get(key) ?? 0) + 1);
    }
    const local = deps.engine.ownedSources();
    const rows = [
      ...local.map((o) => ({ ...o, key: `${o.poolKey}:${o.slot}`, owner: workerId, ownerPid: process.pid })),
      ...others.flatMap((w) => (w.sourceDetails ?? []).map((d) => {
        const i = d.key.lastIndexOf(':');
        return {
          streamId: d.streamId, poolKey: d.key.slice(0, i), slot: Number(d.key.slice(i + 1)),
          pid: d.pid, startedAt: d.startedAt, transcode: d.fps === null && d.speed === null ? null : { fps: d.fps, speed: d.speed },
          key: d.key, owner: w.workerId, ownerPid: w.pid,
        };
      })),
    ];
    res.json({
      ...s.pooling,
      local_streams: local.length,
      total_streams: rows.length,
      total_clients: s.total_clients,
      streams: rows.map((r) => ({
        stream_id: r.streamId,
        pool_key: r.poolKey,
        slot: r.slot,
        client_count: perSource.get(r.key) ?? 0,
        owner_worker_id: r.owner,
        worker_pid: r.ownerPid,
        pid: r.pid,
        status: 'running',
        started_at: r.startedAt,
        fps: r.transcode?.fps ?? null,
        speed: r.transcode?.speed ?? null,
      })),
    });
  });

  r.get('/info', async (_req, res) => {
    const [v, hw, profiles] = await Promise.all([deps.versions(), deps.transcoder.hardware(), deps.transcoder.profiles()]);
    res.json({
      version: VERSION,
      ffmpeg_version: v.ffmpeg,
      streamlink_version: v.streamlink,
      ytdlp_version: v.ytdlp,
      hardware_acceleration: { enabled: hw.type !== 'cpu', type: hw.type, device: hw.device, ffmpeg_args: hw.ffmpegArgs },
      redis: {
        enabled: config.redisEnabled,
        pooling_enabled: config.transcodingPooling,
        host: config.redisHost,
        port: config.redisPort,
        db: config.redisDb,
        max_clients_per_stream: config.maxClientsPerSharedStream,
        stream_timeout: config.sharedStreamTimeoutMs / 1000,
        sharing_strategy: config.sharingStrategy,
      },
      transcoding: { enabled: true, profiles: Object.fromEntries(profiles.map((p) => [p.name, p.description])) },
      configuration: {
        default_user_agent: config.defaultUserAgent,
        client_timeout: config.clientTimeoutMs / 1000,
        stream_timeout: config.streamTimeoutMs / 1000,
        cleanup_interval: config.cleanupIntervalMs / 1000,
        max_retries: config.streamRetryAttempts,
      },
      worker: {
        worker_id: workerId,
        heartbeat_interval: config.heartbeatIntervalMs / 1000,
        multi_worker_mode: deps.expectedWorkers > 1,
        workers: deps.expectedWorkers,
      },
    });
  });

  r.get('/workers', async (_req, res) => {
    const list = (await coordinator.listWorkers()).sort((a, b) => a.workerId.localeCompare(b.workerId));
    res.json({
      workers: list.map((w) => ({
        worker_id: w.workerId,
        pid: w.pid,
        host: w.host,
        started_at: w.startedAt,
        last_seen: w.lastSeen,
        sources_owned: w.sources,
        viewers: w.viewers,
        relays: w.relays,
      })),
      total: list.length,
    });
  });

  r.post('/test-connection', async (req, res) => {
    const { url, tls_verify } = parseBody(testConnectionSchema, req.body);
    const tested = url.replace(/\/+$/, '');
    try {
      const { res: up } = await openUpstream({
        url: tested,
        headers: { 'User-Agent': config.defaultUserAgent },
        timeoutMs: TEST_TIMEOUT_MS,
        acceptErrors: true,
        tlsVerify: tls_verify ?? config.upstreamTlsVerify,
      });
      up.destroy();
      const code = up.statusCode ?? 0;
      const success = code < 400;
      res.json({
        success,
        message: success ? 'Connection successful' : `Upstream answered HTTP ${code}`,
        status_code: code,
        url_tested: redactUrl(tested),
      });
    } catch (err) {
      res.json({
        success: false,
        message: 'Connection failed',
        error: err instanceof Error ? err.message : String(err),
        url_tested: redactUrl(tested),
      });
    }
  });

  return r;
}
