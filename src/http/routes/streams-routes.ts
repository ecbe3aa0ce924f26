// Management of stream definitions (API.md §3.2, §3.4, §3.6).
import { Router } from 'express';
import { AppError } from '../../errors.js';
import { entryStreamType, type StreamDefinition } from '../../streams/stream-definition.js';
import type { StopReason, StreamService } from '../../streams/stream-service.js';
import { clientJson } from '../../streams/stream-service.js';
import type { ToolVersions } from '../../ffmpeg/tool-versions.js';
import type { ResolverName } from '../../streams/resolvers/resolver-args.js';
import { resolverSpecFrom } from '../../streams/resolvers/resolver-spec.js';
import type { StreamEngine } from '../../streams/stream-engine.js';
import { streamIdParam } from '../request-values.js';
import { queryOrBody } from '../delete-params.js';
import { createStreamSchema, parseBody, queryBool, queryString, type CreateStreamBody } from '../schemas.js';

export interface StreamsRoutesDeps {
  service: StreamService;
  versions: () => Promise<ToolVersions>;
  engine: StreamEngine;
  defaultUserAgent: string;
}

const SILENCE_FIELDS = [
  'enable_silence_detection', 'silence_threshold_db', 'silence_duration',
  'silence_check_interval', 'silence_failover_threshold', 'silence_monitoring_grace_period',
] as const;

/** Metadata values are stored as strings: 42 → "42", true → "true"; a null value is left out. */
const stringify = (m: Record<string, string | number | boolean | null> | null | undefined): Record<string, string> =>
  Object.fromEntries(Object.entries(m ?? {}).filter(([, v]) => v !== null).map(([k, v]) => [k, String(v)]));

/** Whether a resolver's binary answered `--version` at start. */
export const resolverInstalled = (versions: () => Promise<ToolVersions>) => async (name: ResolverName): Promise<boolean> =>
  (await versions())[name] !== null;

/** The stream input of a create body; 422/503 for resolver fields (resolver-spec.ts). */
export async function toStreamInput(body: CreateStreamBody, versions: () => Promise<ToolVersions>) {
  return { ...baseInput(body), resolver: await resolverSpecFrom(body, resolverInstalled(versions)) };
}

function baseInput(body: CreateStreamBody) {
  const options: Record<string, string | number | boolean> = {};
  for (const f of SILENCE_FIELDS) {
    const v = body[f];
    if (v !== undefined && v !== null) options[f] = v;
  }
  if (typeof body.tls_verify === 'boolean') options.tls_verify = body.tls_verify;
  return {
    url: body.url,
    failoverUrls: body.failover_urls ?? [],
    failoverResolverUrl: body.failover_resolver_url ?? null,
    userAgent: body.user_agent ?? null,
    headers: body.headers ?? {},
    metadata: stringify(body.metadata),
    strictLiveTs: body.strict_live_ts ?? null,
    useStickySession: body.use_sticky_session ?? null,
    options,
  };
}

export function endpointOf(def: StreamDefinition): string {
  return def.kind === 'hls' ? `/hls/${def.id}/playlist.m3u8` : `/stream/${def.id}`;
}

export function streamsRoutes({ service, engine, defaultUserAgent, versions }: StreamsRoutesDeps): Router {
  const r = Router();

  r.post('/streams', async (req, res) => {
    const body = parseBody(createStreamSchema, req.body);
    const def = await service.upsert(await toStreamInput(body, versions));
    const endpoint = endpointOf(def);
    res.json({
      stream_id: def.id,
      primary_url: def.url,
      failover_urls: def.failoverUrls,
      user_agent: def.userAgent ?? defaultUserAgent,
      stream_type: def.kind === 'hls' ? 'hls' : 'direct',
      stream_endpoint: endpoint,
      playlist_url: def.kind === 'hls' ? endpoint : null,
      direct_url: `/stream/${def.id}`,
      message: 'Stream created successfully',
      metadata: def.metadata,
    });
  });

  r.get('/streams', async (_req, res) => {
    const streams = await service.entries();
    res.json({ streams, total: streams.length });
  });

  r.get('/streams/by-metadata', async (req, res) => {
    const { field, value } = fieldAndValue(req.query);
    const activeOnly = queryBool(req.query, 'active_only', true);
    const matches = await service.matching(field, value, activeOnly);
    res.json({
      filter: { field, value },
      active_only: activeOnly,
      matching_streams: matches.map(({ def, clients }) => ({
        stream_id: def.id,
        client_count: clients.length,
        metadata: def.metadata,
        last_access: engine.runtime(def.id).lastAccess ?? def.createdAt,
        is_active: clients.length > 0,
        url: def.url,
        stream_type: def.kind === 'hls' ? 'hls' : 'direct',
      })),
      total_matching: matches.length,
      total_clients: matches.reduce((n, m) => n + m.clients.length, 0),
    });
  });

  r.get('/streams/counts-by-metadata', async (req, res) => {
    const field = queryString(req.query, 'field', true);
    const values = queryString(req.query, 'values', true).split(',').map((v) => v.trim()).filter(Boolean);
    const activeOnly = queryBool(req.query, 'active_only', true);
    const snap = await service.snapshot(); // one read of the coordinator for every value
    const counts: Record<string, number> = {};
    for (const v of values) counts[v] = (await service.matching(field, v, activeOnly, snap)).length;
    res.json({ field, counts });
  });

  r.delete('/streams/by-metadata', async (req, res) => {
    const q = queryOrBody(req); // the editor sends these as a JSON body
    const { field, value } = fieldAndValue(q);
    const exclude = queryString(q, 'exclude_channel_id');
    const force = queryBool(q, 'force', true);
    const keepClient = queryString(q, 'client_id');
    const deleted: string[] = [];
    const skipped: Array<Record<string, unknown>> = [];
    for (const { def, clients } of await service.matching(field, value, false)) {
      if (exclude !== undefined && def.metadata.id === exclude) {
        skipped.push({ stream_id: def.id, reason: 'excluded_by_channel_id' });
        continue;
      }
      const others = clients.filter((c) => c.clientId !== keepClient).length;
      // force=false: the check for viewers and the delete are one step in the coordinator.
      if (!force && (others > 0 || !(await service.deleteIfIdle(def, 'metadata_filter_deletion', keepClient)))) {
        skipped.push({ stream_id: def.id, reason: 'has_active_clients', active_clients: Math.max(others, 1) });
        continue;
      }
      if (force) await service.delete(def, 'metadata_filter_deletion');
      deleted.push(def.id);
    }
    res.json({
      message: `Deleted ${deleted.length} stream(s) matching ${field}=${value}`,
      deleted_streams: deleted,
      skipped_streams: skipped,
      deleted_count: deleted.length,
    });
  });

  r.delete('/streams/oldest-by-metadata', async (req, res) => {
    const q = queryOrBody(req);
    const { field, value } = fieldAndValue(q);
    const exclude = queryString(q, 'exclude_channel_id');
    const candidates = (await service.matching(field, value, false))
      .filter(({ def }) => exclude === undefined || def.metadata.id !== exclude)
      .sort((a, b) => a.def.createdAt.localeCompare(b.def.createdAt));
    const oldest = candidates[0]?.def;
    if (!oldest) {
      res.json({ message: `No stream matches ${field}=${value}`, deleted_stream: null, stream_age_seconds: null, deleted_count: 0 });
      return;
    }
    await service.delete(oldest, 'oldest_stream_deletion');
    res.json({
      message: `Deleted the oldest stream matching ${field}=${value}`,
      deleted_stream: oldest.id,
      stream_age_seconds: Math.round((Date.now() - Date.parse(oldest.createdAt)) / 1000),
      deleted_count: 1,
    });
  });

  r.get('/streams/:id', async (req, res) => {
    const def = await service.get(streamIdParam(req));
    const snap = await service.snapshot();
    const clients = (snap.byStream.get(def.id) ?? []).map(clientJson);
    res.json({ stream: await service.entry(def, snap), clients, client_count: clients.length });
  });

  r.delete('/streams/:id', async (req, res) => {
    const def = await service.get(streamIdParam(req));
    await service.delete(def, 'manual_deletion' satisfies StopReason);
    res.json({ message: `Stream ${def.id} deleted` });
  });

  r.post('/streams/:id/failover', async (req, res) => {
    const def = await service.get(streamIdParam(req));
    if (def.failoverUrls.length === 0 && !def.failoverResolverUrl) {
      throw new AppError(400, 'NO_FAILOVER', `Stream ${def.id} has no failover URLs or resolver`);
    }
    // Acted on by the worker that owns the source, whichever worker answers (issue 16).
    const answer = await engine.failover(def.id);
    const clients = (await service.snapshot()).byStream.get(def.id)?.length ?? 0;
    res.json({
      message: answer.switched
        ? 'Failover triggered'
        : answer.running ? 'No further failover source' : 'The stream is not running: nothing to switch',
      new_url: answer.state?.currentUrl ?? def.url,
      failover_index: answer.state?.failoverIndex ?? -1,
      failover_attempts: answer.state?.failoverAttempts ?? 0,
      active_clients: clients,
      stream_type: entryStreamType(def.kind), // the words of /streams
    });
  });

  return r;
}

function fieldAndValue(q: Record<string, unknown>): { field: string; value: string } {
  return { field: queryString(q, 'field', true), value: queryString(q, 'value', true) };
}
