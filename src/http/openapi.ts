// The OpenAPI 3.1 document of the HTTP API (API.md §9), built from what is really mounted: the
// paths and methods come from the express router's stack, the auth rule of each from where it
// sits relative to the token middleware, and request bodies from the zod schemas the routes
// validate with (zod-openapi). Only the words (summaries, query parameters) are kept here; a
// mounted route without them is reported by `undocumentedRoutes` (a test fails on it).
import type { Router } from 'express';
import { z } from 'zod';
import { createDocument, type ZodOpenApiOperationObject, type ZodOpenApiPathsObject } from 'zod-openapi';
import { VERSION } from '../version.js';
import { transcodeSchema } from './routes/transcode-routes.js';
import { webhookSchema } from './routes/webhooks-routes.js';
import { createStreamSchema, testConnectionSchema } from './schemas.js';
import { startBroadcastSchema } from '../streams/broadcast/broadcast-schema.js';

/** A mounted route: OpenAPI path (`{id}`), lower-case method, and whether the token applies. */
export interface MountedRoute {
  path: string;
  method: string;
  tokenRequired: boolean;
}

interface Words {
  summary: string;
  tag: string;
  query?: z.ZodObject;
  body?: z.ZodType;
  /** Routes with a rule of their own: the words, and whether a token is asked by default. */
  auth?: string;
  ownToken?: boolean;
}

const s = (description: string) => z.string().optional().meta({ description });
const bool = (description: string) => z.enum(['true', 'false', '1', '0']).optional().meta({ description });
const metadataQuery = (extra: Record<string, z.ZodType> = {}) =>
  z.object({ field: z.string().meta({ description: 'metadata field' }), value: z.string().meta({ description: 'value to match' }), ...extra });
const player = z.object({
  client_id: s('viewer id (1-128 of A-Z a-z 0-9 . _ ~ @ + = -); derived from IP, user agent and username when absent'),
  username: s('the viewer\'s account (also `user`, `u` or header X-Username)'),
  url: s('create the stream on the fly: needs the token or a signed URI (exp, sig)'),
  exp: s('signed URI expiry (unix seconds)'),
  sig: s('signed URI signature (HMAC-SHA256, base64url)'),
  api_token: s('the token, when not in X-API-Token'),
});
const hlsTarget = player.extend({
  seg: s('segment name of an HLS transcode'),
  parent: s('variant playlist parent'),
});
const BROADCAST_AUTH = 'needs the token when API_TOKEN is set (checked by the route)';
const PLAYER_AUTH = 'public for stream ids that exist; `?url=` needs the token or a signed URI';

const WORDS: Record<string, Words> = {
  'get /': { summary: 'Service status and totals', tag: 'status' },
  'get /health': { summary: 'Health: coordinator, workers, totals (503 when degraded)', tag: 'status' },
  'get /info': { summary: 'Versions (ffmpeg, streamlink, yt-dlp), hardware acceleration, configuration', tag: 'status' },
  'get /stats': { summary: 'Totals, streams and clients', tag: 'status' },
  'get /stats/streams': { summary: 'Every stream entry', tag: 'status' },
  'get /stats/clients': { summary: 'Every viewer', tag: 'status' },
  'get /stats/pooled': { summary: 'Every source in the cluster with its pool key and slot', tag: 'status' },
  'get /clients': { summary: 'Every viewer', tag: 'status' },
  'get /workers': { summary: 'Workers with their sources, viewers and relays', tag: 'status' },
  'post /test-connection': { summary: 'Test an upstream URL (GET, 5 s timeout)', tag: 'status', body: testConnectionSchema },
  'get /validate-cookies-file': {
    summary: 'Whether a cookie file on the proxy host exists, is readable and in the Netscape format (never its contents)',
    tag: 'resolvers', query: z.object({ path: z.string().meta({ description: 'absolute path on the proxy host' }) }),
  },
  'post /streams': { summary: 'Create or update a stream (get-or-create: id = md5 of the URL)', tag: 'streams', body: createStreamSchema },
  'get /streams': { summary: 'Every stream with run-time figures, media_info and output_media_info', tag: 'streams' },
  'get /streams/by-metadata': {
    summary: 'Streams whose metadata field equals a value', tag: 'streams',
    query: metadataQuery({ active_only: bool('only streams with viewers (default true)') }),
  },
  'get /streams/counts-by-metadata': {
    summary: 'Stream counts per metadata value', tag: 'streams',
    query: z.object({ field: z.string(), values: z.string().meta({ description: 'comma-separated values' }), active_only: bool('default true') }),
  },
  'delete /streams/by-metadata': {
    summary: 'Delete the streams whose metadata field equals a value', tag: 'streams',
    query: metadataQuery({
      exclude_channel_id: s('keep the stream whose metadata.id is this'),
      force: bool('false: keep streams with viewers other than client_id (default true)'),
      client_id: s('the viewer that may be ignored with force=false'),
    }),
  },
  'delete /streams/oldest-by-metadata': {
    summary: 'Delete the oldest stream whose metadata field equals a value', tag: 'streams',
    query: metadataQuery({ exclude_channel_id: s('keep the stream whose metadata.id is this') }),
  },
  'get /streams/{id}': { summary: 'One stream and its viewers', tag: 'streams' },
  'delete /streams/{id}': { summary: 'Delete a stream everywhere (viewers and source stop)', tag: 'streams' },
  'post /streams/{id}/failover': { summary: 'Switch to the next failover source', tag: 'streams' },
  'post /transcode': { summary: 'Create a transcode from a profile or a raw template', tag: 'transcoding', body: transcodeSchema },
  'get /transcode/profiles': { summary: 'Profiles and detected hardware acceleration', tag: 'transcoding' },
  'post /webhooks': { summary: 'Register a webhook', tag: 'events', body: webhookSchema },
  'get /webhooks': { summary: 'Registered webhooks', tag: 'events' },
  'delete /webhooks': { summary: 'Remove a webhook (webhook_url in the query or a JSON body)', tag: 'events', query: z.object({ webhook_url: s('the URL') }) },
  'post /webhooks/test': { summary: 'Send a test stream_started event', tag: 'events', query: z.object({ webhook_url: z.string() }) },
  'get /stream/{id}': { summary: 'Play a stream (live TS, VOD with Range, transcode)', tag: 'player', query: player, auth: PLAYER_AUTH },
  'head /stream/{id}': { summary: 'Headers of a stream (live answers at once)', tag: 'player', query: player, auth: PLAYER_AUTH },
  'get /hls/{id}/playlist.m3u8': { summary: 'HLS playlist, every URI rewritten to the proxy', tag: 'player', query: hlsTarget, auth: PLAYER_AUTH },
  'get /hls/{id}/segment': { summary: 'HLS segment or key', tag: 'player', query: hlsTarget, auth: PLAYER_AUTH },
  'get /hls/{id}/segment.ts': { summary: 'HLS segment (MPEG-TS)', tag: 'player', query: hlsTarget, auth: PLAYER_AUTH },
  'get /hls/{id}/segment.m4s': { summary: 'HLS segment (fMP4)', tag: 'player', query: hlsTarget, auth: PLAYER_AUTH },
  'get /hls/{id}/segment.mp4': { summary: 'HLS segment (MP4)', tag: 'player', query: hlsTarget, auth: PLAYER_AUTH },
  'get /metrics': {
    summary: 'Prometheus metrics of the whole host', tag: 'status', ownToken: true,
    auth: 'needs the token (also as Authorization: Bearer) unless METRICS_PUBLIC=true',
  },
  'get /broadcast/{id}/live.m3u8': { summary: 'Network broadcast playlist (BROADCAST.md)', tag: 'broadcast', auth: 'public' },
  'get /broadcast/{id}/segment/{file}': { summary: 'Network broadcast segment', tag: 'broadcast', auth: 'public' },
  'get /broadcast/{id}/{file}': { summary: 'Network broadcast segment by name (live000001.ts)', tag: 'broadcast', auth: 'public' },
  'post /broadcast/{id}/start': { summary: 'Start a network broadcast', tag: 'broadcast', body: startBroadcastSchema, ownToken: true, auth: BROADCAST_AUTH },
  'post /broadcast/{id}/stop': { summary: 'Stop a network broadcast', tag: 'broadcast', ownToken: true, auth: BROADCAST_AUTH },
  'get /broadcast/{id}/status': { summary: 'Status of a network broadcast', tag: 'broadcast', ownToken: true, auth: BROADCAST_AUTH },
  'get /broadcast': { summary: 'Every network broadcast', tag: 'broadcast', ownToken: true, auth: BROADCAST_AUTH },
  'delete /broadcast/{id}': { summary: 'Stop a network broadcast and remove its files', tag: 'broadcast', ownToken: true, auth: BROADCAST_AUTH },
  'delete /hls/{id}/clients/{client_id}': {
    summary: 'Remove an HLS viewer', tag: 'player', ownToken: true, auth: 'needs the token when API_TOKEN is set (checked by the route)',
  },
  'get /openapi.json': { summary: 'This document', tag: 'docs' },
  'get /docs': { summary: 'The API page (Swagger UI)', tag: 'docs' },
};

interface LayerLike {
  route?: { path: string | string[]; methods: Record<string, boolean> };
  handle?: { stack?: LayerLike[] };
  rawPath?: unknown;
}

const openApiPath = (p: string): string => p.replace(/:([A-Za-z0-9_]+)/g, '{$1}');

/**
 * The routes mounted on `router` (sub-routers followed), in order; `tokenRequired` is true for
 * those after the `auth` middleware. Static asset handlers (no route) are not routes.
 */
export function mountedRoutes(router: Router, auth: unknown): MountedRoute[] {
  const out: MountedRoute[] = [];
  let afterAuth = false;
  const walk = (stack: LayerLike[], prefix: string): void => {
    for (const layer of stack) {
      if (layer.handle === auth) afterAuth = true;
      if (layer.route) {
        const paths = Array.isArray(layer.route.path) ? layer.route.path : [layer.route.path];
        for (const p of paths) {
          for (const method of Object.keys(layer.route.methods)) {
            if (method === '_all') continue;
            out.push({ path: openApiPath(prefix + p), method, tokenRequired: afterAuth });
          }
        }
      } else if (layer.handle?.stack) {
        const mount = typeof layer.rawPath === 'string' && layer.rawPath !== '/' ? layer.rawPath : '';
        walk(layer.handle.stack, prefix + mount);
      }
    }
  };
  walk((router as unknown as { stack: LayerLike[] }).stack, '');
  return out;
}

/** Mounted routes the document has no words for (`METHOD /path`). */
export function undocumentedRoutes(routes: readonly MountedRoute[]): string[] {
  return routes.filter((r) => !WORDS[`${r.method} ${r.path}`]).map((r) => `${r.method.toUpperCase()} ${r.path}`);
}

const errorSchema = z.object({
  detail: z.string(),
  code: z.string(),
  errors: z.array(z.object({ field: z.string(), message: z.string() })).optional(),
}).meta({ id: 'Error' });

/** The document for the routes mounted (both base paths serve it: `servers` names them). */
export function openApiDocument(routes: readonly MountedRoute[], rootPath: string): ReturnType<typeof createDocument> {
  const paths: ZodOpenApiPathsObject = {};
  for (const r of routes) {
    const words = WORDS[`${r.method} ${r.path}`];
    const params = [...r.path.matchAll(/\{([A-Za-z0-9_]+)\}/g)].map((m) => m[1]!);
    const token = r.tokenRequired || words?.ownToken === true;
    const op: ZodOpenApiOperationObject = {
      summary: words?.summary ?? '(undocumented)',
      tags: [words?.tag ?? 'other'],
      description: words?.auth
        ? `${words.auth[0]!.toUpperCase()}${words.auth.slice(1)}.`
        : token ? 'Management route: needs X-API-Token (or ?api_token) when API_TOKEN is set; open when it is not.' : 'Public.',
      ...(token ? { security: [{ apiToken: [] }, { apiTokenQuery: [] }] } : { security: [] }),
      requestParams: {
        ...(params.length ? { path: z.object(Object.fromEntries(params.map((p) => [p, z.string()]))) } : {}),
        ...(words?.query ? { query: words.query } : {}),
      },
      ...(words?.body ? { requestBody: { content: { 'application/json': { schema: words.body } } } } : {}),
      responses: {
        '200': { description: 'Success (JSON, or the media for player routes)' },
        default: { description: 'Error', content: { 'application/json': { schema: errorSchema } } },
      },
    };
    paths[r.path] = { ...paths[r.path], [r.method]: op };
  }
  return createDocument({
    openapi: '3.1.0',
    info: { title: 'm3u-proxy', version: VERSION, description: 'IPTV / media stream proxy; API compatible with the Python m3u-proxy 0.4.x (m3u-editor).' },
    servers: [{ url: '/' }, ...(rootPath ? [{ url: rootPath }] : [])],
    components: {
      securitySchemes: {
        apiToken: { type: 'apiKey', in: 'header', name: 'X-API-Token' },
        apiTokenQuery: { type: 'apiKey', in: 'query', name: 'api_token' },
      },
    },
    paths,
  });
}

/** The /docs page: Swagger UI (from swagger-ui-express's assets) reading `openapi.json`. */
export function docsPage(): string {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>m3u-proxy API</title>
<link rel="stylesheet" href="docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script>
  // The token this page was opened with (?api_token=) also fetches the document.
  const token = new URLSearchParams(location.search).get('api_token');
  window.ui = SwaggerUIBundle({
    url: 'openapi.json', dom_id: '#swagger-ui',
    requestInterceptor: (req) => { if (token) req.headers['X-API-Token'] = token; return req; },
  });
</script></body></html>`;
}
