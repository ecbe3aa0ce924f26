// Providers that allow one connection per account (most IPTV resellers) refuse a second one
// with 403, 429, 458 (Xtream's "max connections"), 503, …. A channel switch (Plex opens the
// next channel before it closes the last) must not be refused because of our own source of
// the previous channel, still in its grace period with nobody watching: such sources to the
// same host are stopped at once and the new one retries (issue 13, input 8).
import type { LiveSession } from './live-session.js';

/** HTTP statuses with which providers refuse a connection over their limit. */
export const REFUSAL_STATUSES: ReadonlySet<number> = new Set([401, 403, 423, 429, 458, 503, 509]);

export const isRefusal = (status: number | null): boolean => status !== null && REFUSAL_STATUSES.has(status);

const hostOf = (url: string): string | null => {
  try {
    return new URL(url).host.toLowerCase();
  } catch {
    return null;
  }
};

/**
 * Stops every session of `sessions` other than `exceptKey` that owns an upstream GET to the
 * host of `url` and has no viewer left (in its grace period). Returns how many it stopped.
 */
export function stopIdleSourcesToHost(sessions: Iterable<LiveSession>, url: string, exceptKey: string): number {
  const host = hostOf(url);
  if (host === null) return 0;
  let stopped = 0;
  for (const s of [...sessions]) {
    const src = s.failoverPlan; // an idle HTTP source or FFmpeg input holds a provider connection alike
    if (s.key === exceptKey || !s.isIdle || !src || hostOf(src.currentUrl) !== host) continue;
    s.stop();
    stopped++;
  }
  return stopped;
}
