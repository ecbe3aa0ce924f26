// Read-only views of the service (API.md §3.5) and the connection test.
import { Router, type Request, type Response } from 'express';
import type { Config } from '../../config.js';
import type { Coordinator } from '../../coordination/coordinator.js';
import { staleWorkers } from '../../coordination/heartbeat.js';
import type { ToolVersions } from '../../ffmpeg/tool-versions.js';
import { redactUrl } from '../../logger.js';
import type { StreamService } from '../../streams/stream-service.js';
import { openUpstream } from '../../streams/upstream.js';
import { VERSION } from '../../version.js';
import { parseBody, testConnectionSchema } from '../schemas.js';

export interface StatusRoutesDeps {
  config: Config;
  coordinator: Coordinator;
  service: StreamService;
  workerId: string;
  startedAt: Date;
  versions: () => Promise<ToolVersions>;
  expectedWorkers: number;
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

  const stats = async () => {
    const totals = await service.totals();
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
    const { clients: list } = await service.totals();
    res.json({ clients: list, total_clients: list.length });
  };
  r.get('/clients', clients);
  r.get('/stats/clients', clients);

  r.get('/stats/pooled', async (_req, res) => {
    const s = await stats();
    const owned = s.streams.flatMap((e) => (e.owner ? [{ e, owner: e.owner }] : []));
    res.json({
      ...s.pooling,
      local_streams: owned.filter(({ owner }) => owner.worker_id === workerId).length,
      total_streams: owned.length,
      total_clients: s.total_clients,
      streams: owned.map(({ e, owner }) => ({
        stream_id: e.stream_id,
        pool_key: e.pool_key,
        slot: 1,
        client_count: e.client_count,
        owner_worker_id: owner.worker_id,
        worker_pid: owner.pid,
        pid: e.source_pid,
        status: 'running',
        started_at: e.created_at,
      })),
    });
  });

  r.get('/info', async (_req, res) => {
    const v = await deps.versions();
    res.json({
      version: VERSION,
      ffmpeg_version: v.ffmpeg,
      streamlink_version: v.streamlink,
      ytdlp_version: v.ytdlp,
      hardware_acceleration: { enabled: false, type: 'cpu', device: null, ffmpeg_args: [] },
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
      transcoding: { enabled: false, profiles: {} },
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
    const { url } = parseBody(testConnectionSchema, req.body);
    const tested = url.replace(/\/+$/, '');
    try {
      const { res: up } = await openUpstream({
        url: tested,
        headers: { 'User-Agent': config.defaultUserAgent },
        timeoutMs: TEST_TIMEOUT_MS,
        acceptErrors: true,
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
