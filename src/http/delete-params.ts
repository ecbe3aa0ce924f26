// m3u-editor sends DELETE /streams/by-metadata's parameters as a JSON body: Laravel's
// `Http::delete($url, $params)` puts `$params` in the body, not the query (its own comment
// says so where it appends them to the URL by hand for oldest-by-metadata). Both forms are
// accepted; the query wins, and body values meet the same rules as query values
// (request-values.ts) before any stream is touched.
import type { Request } from 'express';
import { validationError } from '../errors.js';
import { CLIENT_ID, TEXT } from './request-values.js';

const RULES = { field: TEXT, value: TEXT, exclude_channel_id: TEXT, client_id: CLIENT_ID, force: TEXT } as const;

/** The query, with the JSON body's scalar values for the names of RULES under it. */
export function queryOrBody(req: Request): Record<string, unknown> {
  const body = req.body as unknown;
  const merged: Record<string, unknown> = {};
  if (body && typeof body === 'object' && !Array.isArray(body)) {
    for (const [name, rule] of Object.entries(RULES)) {
      const v = (body as Record<string, unknown>)[name];
      if (v === undefined || v === null) continue;
      if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
        throw validationError(`${name}: must be a string`, [{ field: name, message: 'must be a string' }]);
      }
      const text = String(v);
      if (text !== '' && !rule.re.test(text)) throw validationError(`${name}: ${rule.message}`, [{ field: name, message: rule.message }]);
      merged[name] = text;
    }
  }
  return { ...merged, ...(req.query as Record<string, unknown>) };
}
