// Creates a stream (or a transcode) on a running proxy and returns its id; anything but a 200
// fails the calling test with the proxy's answer.
import { apiCall } from './api-call.js';

export async function createStream(base: string, body: string | Record<string, unknown>, route = '/streams'): Promise<string> {
  const res = await apiCall<{ stream_id?: string }>(base, route, { method: 'POST', body: typeof body === 'string' ? { url: body } : body });
  if (res.status !== 200 || !res.body.stream_id) throw new Error(`POST ${route} answered ${res.status}: ${JSON.stringify(res.body)}`);
  return res.body.stream_id;
}
