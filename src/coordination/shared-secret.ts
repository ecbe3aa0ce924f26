// A cluster-wide secret kept in the coordinator (relay secret, URL signing secret): generated
// by the first worker that needs it, cached by everyone. The cache is not forever: after the
// coordinator came back empty, each worker offers its cached value again (the first offer
// wins, everyone adopts it), and a worker that meets a mismatch (a relay's 403) reads it again,
// at most once a second, so a split never lasts and never turns into a tight retry loop.
import { randomBytes } from 'node:crypto';
import type { Coordinator } from './coordinator.js';

export interface SharedSecret {
  /** The value (cached after the first read). */
  (): Promise<string>;
  /** Reads it from the coordinator again (throttled to once per `rereadMs`); the value. */
  reread(): Promise<string>;
  /** Offers the cached value to a coordinator that lost it; adopts whichever value won. */
  republish(): Promise<void>;
}

export function sharedSecret(coordinator: Coordinator, name: string, rereadMs = 1000): SharedSecret {
  let pending: Promise<string> | null = null;
  let value: string | null = null;
  let lastReread = 0;
  const load = (create: () => string): Promise<string> => {
    const p = coordinator.getOrSetValue(name, create).then(
      (v) => {
        value = v;
        return v;
      },
      (err: unknown) => {
        if (pending === p) pending = null; // a coordinator hiccup must not poison the cache
        throw err;
      },
    );
    pending = p;
    return p;
  };
  const generate = (): string => randomBytes(32).toString('base64url');
  const get = (() => pending ?? load(generate)) as SharedSecret;
  get.reread = () => {
    if (pending && Date.now() - lastReread < rereadMs) return pending;
    lastReread = Date.now();
    return load(generate);
  };
  get.republish = async () => {
    const mine = value;
    if (mine === null) return;
    await load(() => mine);
  };
  return get;
}
