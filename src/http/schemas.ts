// Request bodies and queries, validated with zod; every violation becomes one entry of a
// 422 VALIDATION_ERROR, never a 500.
import { z } from 'zod';
import { validationError, type FieldError } from '../errors.js';

const FORBIDDEN_IN_URL = ['<script', 'javascript:', 'data:', 'vbscript:'];

export function urlProblem(value: string): string | null {
  const lower = value.toLowerCase();
  if (FORBIDDEN_IN_URL.some((f) => lower.includes(f))) return 'must not contain script or data content';
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    return 'must be an absolute http(s) URL';
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return 'must be an http or https URL';
  if (!u.hostname) return 'must name a host';
  return null;
}

export const httpUrl = z
  .string({ error: 'must be a string' })
  .trim()
  .min(1, 'must not be empty')
  .max(8192, 'must be at most 8192 characters')
  .superRefine((v, ctx) => {
    const problem = urlProblem(v);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  });

// Header names are HTTP tokens; values may not smuggle a second header.
export const headerMap = z.record(
  z.string().regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'must be a valid header name'),
  z.string({ error: 'header values must be strings' }).regex(/^[^\r\n\0]*$/, 'must not contain line breaks'),
);

// null is accepted and the key dropped: m3u-editor sends `strict_live_ts: null` for playlist
// kinds that have no such column (custom, merged playlists, aliases).
const metadataMap = z.record(
  z.string(),
  z.union([z.string(), z.number(), z.boolean(), z.null()], {
    error: 'metadata values must be strings, numbers, booleans or null (no nesting)',
  }),
);

const optional = <T extends z.ZodType>(t: T) => t.nullish();

export const createStreamSchema = z.object(
  {
    url: httpUrl,
    failover_urls: optional(z.array(httpUrl).max(100)),
    failover_resolver_url: optional(httpUrl),
    user_agent: optional(z.string().max(1024).regex(/^[^\r\n\0]*$/, 'must not contain line breaks')),
    headers: optional(headerMap),
    metadata: optional(metadataMap),
    strict_live_ts: optional(z.boolean()),
    use_sticky_session: optional(z.boolean()),
    /** false: accept an upstream certificate that does not verify (UPSTREAM_TLS_VERIFY for this stream). */
    tls_verify: optional(z.boolean()),
    enable_silence_detection: optional(z.boolean()),
    silence_threshold_db: optional(z.number()),
    silence_duration: optional(z.number().nonnegative()),
    silence_check_interval: optional(z.number().positive()),
    silence_failover_threshold: optional(z.number().int().nonnegative()),
    silence_monitoring_grace_period: optional(z.number().nonnegative()),
    // Stream resolvers (API.md §9): the editor sends resolver_args as a string, maybe empty.
    resolver: optional(z.enum(['streamlink', 'ytdlp', ''], { error: 'must be "streamlink" or "ytdlp"' })),
    resolver_args: optional(z.union([z.string().max(4096), z.array(z.string().max(1024)).max(64)], {
      error: 'must be a string (split like a shell would) or an array of strings',
    })),
    cookies_path: optional(z.string().max(4096)),
  },
  { error: 'the body must be a JSON object' },
);

export type CreateStreamBody = z.infer<typeof createStreamSchema>;

export const testConnectionSchema = z.object({ url: httpUrl, tls_verify: optional(z.boolean()) }, { error: 'the body must be a JSON object' });

/** Parses or throws a 422 listing every problem. */
export function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
  const result = schema.safeParse(body ?? undefined);
  if (result.success) return result.data;
  const errors: FieldError[] = result.error.issues.map((i) => ({
    field: i.path.length > 0 ? i.path.map(String).join('.') : 'body',
    message: i.code === 'invalid_type' && i.input === undefined ? 'is required' : i.message,
  }));
  throw validationError(errors.map((e) => `${e.field}: ${e.message}`).join('; '), errors);
}

const BOOL = /^(true|false|1|0)$/i;

type Query = Record<string, unknown>;

/** A query parameter given at most once; 422 when required and missing. */
export function queryString(q: Query, name: string, required: true): string;
export function queryString(q: Query, name: string, required?: boolean): string | undefined;
export function queryString(q: Query, name: string, required = false): string | undefined {
  const v = q[name];
  if (v === undefined || v === '') {
    if (required) throw validationError(`${name}: is required`, [{ field: name, message: 'is required' }]);
    return undefined;
  }
  if (typeof v !== 'string') {
    throw validationError(`${name}: must be given once`, [{ field: name, message: 'must be given once' }]);
  }
  return v;
}

/** `true/false/1/0`, case-insensitive. */
export function queryBool(q: Query, name: string, fallback: boolean): boolean {
  const v = queryString(q, name);
  if (v === undefined) return fallback;
  if (!BOOL.test(v)) {
    throw validationError(`${name}: must be true, false, 1 or 0`, [{ field: name, message: 'must be true, false, 1 or 0' }]);
  }
  return /^(true|1)$/i.test(v);
}
