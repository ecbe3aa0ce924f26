// JSON calls to a running proxy, as the editor's HTTP client makes them (fetch, JSON body,
// optional X-API-Token).
export interface ApiAnswer<T> {
  status: number;
  headers: Headers;
  body: T;
}

export async function apiCall<T = Record<string, unknown>>(
  base: string,
  path: string,
  opts: { method?: string; body?: unknown; token?: string; headers?: Record<string, string> } = {},
): Promise<ApiAnswer<T>> {
  const headers: Record<string, string> = { Accept: 'application/json', ...opts.headers };
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  if (opts.token) headers['X-API-Token'] = opts.token;
  const res = await fetch(`${base}${path}`, {
    method: opts.method ?? 'GET',
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: the raw text (a docs page, say)
  }
  return { status: res.status, headers: res.headers, body: body as T };
}
