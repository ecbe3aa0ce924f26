// A timer that an AbortSignal cuts short (resolves, never rejects). The signal usually
// lives as long as its owner (a source, a dispatcher), so the listener is removed when the
// timer fires: one left per wait would pile up.
export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const onAbort = (): void => {
      clearTimeout(t);
      resolve();
    };
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
