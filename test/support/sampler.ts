// Samples a figure every few milliseconds while a fault runs, and keeps its maximum: the
// tests' proof that two sources never overlapped "at the same instant" is the maximum of
// upstream connections (or FFmpeg pids) seen over the whole run.
export interface Sampler {
  readonly max: number;
  readonly samples: number;
  stop(): number;
}

export function sample(read: () => number, everyMs = 10): Sampler {
  let max = 0;
  let samples = 0;
  const take = (): void => {
    max = Math.max(max, read());
    samples++;
  };
  take();
  const timer = setInterval(take, everyMs);
  return {
    get max() {
      return max;
    },
    get samples() {
      return samples;
    },
    stop() {
      clearInterval(timer);
      take();
      return max;
    },
  };
}

/**
 * Longest stretch without real media seen by a viewer: a tick whose new bytes exceed what
 * keep-alive null packets bring (7 packets, 1316 bytes, per second) counts as media.
 */
export function gapMeter(bytes: () => number, everyMs = 50, minBytesPerTick = 2000): { readonly longest: number; stop(): number } {
  let last = bytes();
  let lastMediaAt = Date.now();
  let longest = 0;
  const timer = setInterval(() => {
    const now = Date.now();
    const b = bytes();
    if (b - last >= minBytesPerTick) {
      longest = Math.max(longest, now - lastMediaAt - everyMs);
      lastMediaAt = now;
    }
    last = b;
  }, everyMs);
  return {
    get longest() {
      return Math.max(longest, Date.now() - lastMediaAt - everyMs);
    },
    stop() {
      clearInterval(timer);
      return longest;
    },
  };
}
