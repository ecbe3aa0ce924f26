// The resolver fields of POST /streams and POST /transcode (API.md §9) turned into a stored
// ResolverSpec: checked arguments, a checked cookie file, and a resolver that is installed.
import { validationError } from '../../errors.js';
import type { ResolverSpec } from '../stream-definition.js';
import { checkCookiesFile } from './cookies-file.js';
import { sanitizeResolverArgs, type ResolverName } from './resolver-args.js';
import { resolverMissing } from './resolver-run.js';

export interface ResolverFields {
  resolver?: ResolverName | '' | null | undefined;
  resolver_args?: string | string[] | null | undefined;
  cookies_path?: string | null | undefined;
}

/**
 * null without a resolver (then `resolver_args` and `cookies_path` are ignored, as the editor
 * sends them empty). Throws 422 VALIDATION_ERROR for refused arguments or a cookie file that
 * is not a readable Netscape cookie file, 503 RESOLVER_UNAVAILABLE when the binary is missing
 * (`installed` comes from the versions detected at start).
 */
export async function resolverSpecFrom(
  body: ResolverFields,
  installed: (name: ResolverName) => Promise<boolean>,
): Promise<ResolverSpec | null> {
  const name = body.resolver;
  if (!name) return null;
  const { options, quality } = sanitizeResolverArgs(name, body.resolver_args);
  const cookiesPath = body.cookies_path?.trim() || null;
  if (cookiesPath) {
    const check = await checkCookiesFile(cookiesPath);
    if (!check.valid) throw validationError(`cookies_path: ${check.message}`, [{ field: 'cookies_path', message: check.message }]);
  }
  const spec: ResolverSpec = { name, options, quality, cookiesPath };
  if (!(await installed(name))) throw resolverMissing(spec);
  return spec;
}
