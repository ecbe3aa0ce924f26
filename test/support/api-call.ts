// JSON calls to a running proxy, as the editor's HTTP client makes them (JSON body, optional
// X-API-Token), each on a fresh connection: a reused keep-alive socket that the server closes
// at the same moment would fail a test for a reason that is not the proxy's.
import http from 'node:http';

export interface ApiAnswer<T> {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: T;
}

export function apiCall<T = Record<string, unknown>>(
  base: string,
  path: string,
  opts: { method?: string; body?: unknown; token?: string; headers?: Record<string, string> } = {},
): Promise<ApiAnswer<T>> {
  const headers: Record<string, string> = { Accept: 'application/json', ...opts.headers };
  const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  if (payload !== undefined) {
    headers['Content-Type'] = 'application/json';
    headers['Content-Length'] = String(Buffer.byteLength(payload));
  }
  if (opts.token) headers['X-API-Token'] = opts.token;
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${path}`, { method: opts.method ?? 'GET', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON: the raw text
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: body as T });
      });
    });
    req.on('error', reject);
    req.end(payload);
  });
}
