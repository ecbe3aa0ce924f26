// One upstream HTTP(S) request with redirects followed (http/https only), a timeout until
// the response head, and errors that never carry the URL's credentials.
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { redactUrl } from '../../redact.js';
import { InternalRedirectError, isInternalAddress, outsideOnlyLookup, pointsInside } from './internal-address.js';

export type UpstreamErrorKind = 'connect_error' | 'http_error' | 'aborted';

export class UpstreamError extends Error {
  constructor(
    readonly kind: UpstreamErrorKind,
    message: string,
    readonly statusCode: number | null = null,
  ) {
    super(message);
    this.name = 'UpstreamError';
  }
}

export interface UpstreamRequest {
  url: string;
  method?: 'GET' | 'HEAD';
  headers?: Record<string, string>;
  /** Time allowed until the response head arrives. */
  timeoutMs: number;
  signal?: AbortSignal;
  maxRedirects?: number;
  /** Statuses ≥ 400 reject with an `http_error` unless this is true. */
  acceptErrors?: boolean;
  /** Verify the TLS certificate; default: UPSTREAM_TLS_VERIFY (setUpstreamTlsVerify). */
  tlsVerify?: boolean | undefined;
}

export interface UpstreamResponse {
  res: http.IncomingMessage;
  finalUrl: string;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const agentOptions = { keepAlive: false, maxSockets: Infinity };
const agents = { http: new http.Agent(agentOptions), https: new https.Agent(agentOptions) };

export function isHttpUrl(url: string): boolean {
  try {
    const u = new URL(url);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}

let tlsVerifyDefault = true;

/** The worker's UPSTREAM_TLS_VERIFY, for requests that do not say (set once at start). */
export function setUpstreamTlsVerify(verify: boolean): void {
  tlsVerifyDefault = verify;
}

/**
 * One upstream request, redirects followed. A redirect into a loopback or link-local address
 * is refused (`http_error`) unless the original URL already pointed there (internal-address.ts).
 */
export async function openUpstream(req: UpstreamRequest): Promise<UpstreamResponse> {
  let url = req.url;
  const maxRedirects = req.maxRedirects ?? 10;
  let startedInside: boolean | null = null; // resolved at the first redirect only
  let guard = false;
  for (let hop = 0; ; hop++) {
    const res = await requestOnce(url, req, guard);
    const location = res.headers.location;
    if (REDIRECTS.has(res.statusCode ?? 0) && location) {
      res.resume();
      if (hop >= maxRedirects) throw new UpstreamError('http_error', 'too many redirects', res.statusCode ?? null);
      let next: string;
      try {
        next = new URL(location, url).toString();
      } catch {
        throw new UpstreamError('http_error', 'redirect to an invalid location', res.statusCode ?? null);
      }
      if (!isHttpUrl(next)) throw new UpstreamError('http_error', 'redirect to a non-http(s) location', res.statusCode ?? null);
      startedInside ??= await pointsInside(req.url);
      if (!startedInside) {
        guard = true;
        const host = new URL(next).hostname.replace(/^\[|\]$/g, '');
        if (net.isIP(host) && isInternalAddress(host)) {
          throw new UpstreamError('http_error', 'redirect to a loopback or link-local address refused', res.statusCode ?? null);
        }
      }
      url = next;
      continue;
    }
    const status = res.statusCode ?? 0;
    if (status >= 400 && !req.acceptErrors) {
      res.resume();
      throw new UpstreamError('http_error', `upstream answered HTTP ${status}`, status);
    }
    return { res, finalUrl: url };
  }
}

function requestOnce(url: string, req: UpstreamRequest, outsideOnly: boolean): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return reject(new UpstreamError('connect_error', 'invalid upstream URL'));
    }
    const isHttps = parsed.protocol === 'https:';
    if (!isHttps && parsed.protocol !== 'http:') {
      return reject(new UpstreamError('connect_error', 'only http and https upstreams are allowed'));
    }
    if (req.signal?.aborted) return reject(new UpstreamError('aborted', 'request aborted'));
    const client = (isHttps ? https : http).request(parsed, {
      method: req.method ?? 'GET',
      headers: req.headers,
      agent: isHttps ? agents.https : agents.http,
      signal: req.signal,
      ...(isHttps ? { rejectUnauthorized: req.tlsVerify ?? tlsVerifyDefault } : {}),
      ...(outsideOnly ? { lookup: outsideOnlyLookup } : {}),
    });
    const timer = setTimeout(() => {
      client.destroy(new UpstreamError('connect_error', `no answer within ${req.timeoutMs} ms`));
    }, req.timeoutMs);
    client.once('response', (res) => {
      clearTimeout(timer);
      resolve(res);
    });
    client.once('error', (err: Error & { code?: string }) => {
      clearTimeout(timer);
      if (err instanceof UpstreamError) return reject(err);
      if (err instanceof InternalRedirectError) return reject(new UpstreamError('http_error', err.message));
      if (req.signal?.aborted || err.name === 'AbortError') {
        return reject(new UpstreamError('aborted', 'request aborted'));
      }
      // Node's messages can quote the host but never the userinfo; redact anyway.
      reject(new UpstreamError('connect_error', redactUrl(err.code ?? err.message)));
    });
    client.end();
  });
}

/**
 * Whether upstream TLS certificates of this stream are verified: its `tls_verify` field when
 * set (stored in the definition's options), else UPSTREAM_TLS_VERIFY (default true).
 */
export function tlsVerifyFor(def: { options: Record<string, unknown> }, config: { upstreamTlsVerify: boolean } = { upstreamTlsVerify: tlsVerifyDefault }): boolean {
  const own = def.options.tls_verify;
  return typeof own === 'boolean' ? own : config.upstreamTlsVerify;
}
