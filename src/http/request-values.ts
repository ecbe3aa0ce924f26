// Values a request supplies that travel on (into a response header, a log field, a Redis key,
// an FFmpeg argv) are checked here, at the edge, once: anything else is a 422
// VALIDATION_ERROR before a stream, a client record or a source is touched. The rule of each
// value is a character set and a length, never "whatever Node's writeHead happens to accept".
import type { NextFunction, Request, Response } from 'express';
import { validationError } from '../errors.js';

/** Query parameters checked on every route, with their rule. */
interface Rule {
  re: RegExp;
  message: string;
}

/**
 * Client ids become a response header (`X-Client-ID`), a Redis key (`client:{stream}:{id}`)
 * and log fields: letters, digits and `. _ ~ @ + = -`, 1–128 characters (API.md §1 caps the
 * length at 128).
 */
export const CLIENT_ID: Rule = { re: /^[A-Za-z0-9._~@+=-]{1,128}$/, message: 'must be 1-128 letters, digits or . _ ~ @ + = -' };
/** Stream ids (md5 hex, or an id the editor chose) become Redis keys and headers. */
export const STREAM_ID: Rule = { re: /^[A-Za-z0-9._-]{1,128}$/, message: 'must be 1-128 letters, digits or . _ -' };
/** Free text stored in client records and events (a username): printable, bounded. */
export const TEXT: Rule = { re: /^[^\x00-\x1f\x7f]{0,256}$/, message: 'must be at most 256 characters without control characters' };
/** User-Agent is stored in the client record; Node already refuses line breaks in headers. */
export const HEADER_TEXT: Rule = { re: /^[^\x00-\x08\x0a-\x1f\x7f]{0,1024}$/, message: 'must be at most 1024 characters without control characters' };

const QUERY_RULES: Record<string, Rule> = {
  client_id: CLIENT_ID,
  username: TEXT,
  user: TEXT,
  u: TEXT,
  exclude_channel_id: TEXT,
  field: TEXT,
  value: TEXT,
};
const HEADER_RULES: Record<string, Rule> = { 'x-username': TEXT, 'user-agent': HEADER_TEXT };

function check(field: string, value: string, rule: Rule): void {
  if (!rule.re.test(value)) throw validationError(`${field}: ${rule.message}`, [{ field, message: rule.message }]);
}

/**
 * Middleware: the query parameters and headers of `QUERY_RULES`/`HEADER_RULES`, wherever they
 * appear. A value given twice stays for `queryString()` to refuse.
 */
export function validateRequestValues(req: Request, _res: Response, next: NextFunction): void {
  const q = req.query as Record<string, unknown>;
  for (const [name, rule] of Object.entries(QUERY_RULES)) {
    const v = q[name];
    if (typeof v === 'string' && v !== '') check(name, v, rule);
  }
  for (const [name, rule] of Object.entries(HEADER_RULES)) {
    const v = req.headers[name];
    if (typeof v === 'string') check(name, v, rule);
  }
  next();
}

/** The `:id` route parameter as a stream id, or a 422. */
export function streamIdParam(req: Request): string {
  const id = String(req.params.id ?? '');
  check('stream_id', id, STREAM_ID);
  return id;
}
