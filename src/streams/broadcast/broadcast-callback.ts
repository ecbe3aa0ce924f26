// The editor's callback (BROADCAST.md §4.2): one POST per event, never retried. The editor
// starts the next programme inside its handler (≥ 3 s), so the request usually times out
// while the editor carries on; a retry would start that programme twice.
import type { Logger } from '../../logger.js';
import { redactUrl } from '../../redact.js';

export const CALLBACK_USER_AGENT = 'M3U-Proxy-Broadcast/1.0';

export type CallbackEvent = 'programme_ended' | 'broadcast_failed';
export type CallbackResult = 'ok' | 'http_error' | 'timeout' | 'error';

export interface CallbackPayload {
  network_id: string;
  event: CallbackEvent;
  timestamp: string;
  dvr_mode: boolean;
  hls_dir: string | null;
  data: Record<string, unknown>;
}

/** ISO-8601 UTC with microseconds and `+00:00`, as Python's `datetime.isoformat()` writes it. */
export function pythonIso(d: Date): string {
  return d.toISOString().replace(/Z$/, '000+00:00');
}

/**
 * Sends one callback and reports how it went; never throws, never retries. `onResult` feeds
 * the metrics (event × result).
 */
export async function sendCallback(
  url: string,
  payload: CallbackPayload,
  opts: { timeoutMs: number; logger: Logger; onResult?: (event: CallbackEvent, result: CallbackResult) => void },
): Promise<CallbackResult> {
  let result: CallbackResult;
  try {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'User-Agent': CALLBACK_USER_AGENT },
      body: JSON.stringify(payload),
      signal: AbortSignal.timeout(opts.timeoutMs),
      redirect: 'manual',
    });
    await res.body?.cancel().catch(() => undefined);
    result = res.status >= 400 ? 'http_error' : 'ok';
    if (result !== 'ok') opts.logger.warn('broadcast callback answered an error', { network_id: payload.network_id, event: payload.event, status: res.status });
  } catch (err) {
    const name = (err as Error).name;
    result = name === 'TimeoutError' || name === 'AbortError' ? 'timeout' : 'error';
    // A timeout is the normal case with the editor (it starts the next programme meanwhile).
    opts.logger.log(result === 'timeout' ? 'info' : 'warn', 'broadcast callback not confirmed', {
      network_id: payload.network_id, event: payload.event, result, url: redactUrl(url),
      error: result === 'error' ? String((err as Error).message) : undefined,
    });
  }
  opts.onResult?.(payload.event, result);
  return result;
}
