// The cluster front of `/broadcast/*` (BROADCAST.md §7.14): every network has exactly one
// owner in the whole deployment, the worker holding the lease `broadcast:{id}` (taken like
// any source's lease, renewed by a LeaseKeeper). Any worker answers every route: the owner
// from its BroadcastManager, the others by asking the owner over the internal relay
// listener (same secret as stream relays). The lease is kept while the network is
// registered (also after FFmpeg ended by itself) or its failed starts are still counted.
import type http from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import type { Config } from '../../config.js';
import { holderWorkerId, type Coordinator } from '../../coordination/coordinator.js';
import { LeaseKeeper } from '../../coordination/lease-keeper.js';
import { AppError, isAppError } from '../../errors.js';
import type { Logger } from '../../logger.js';
import { safeEqual } from '../../safe-equal.js';
import { askOwner, readBody } from '../hls/owner-request.js';
import { RELAY_SECRET_HEADER } from '../sources/relay-source.js';
import { contentTypeOf, SERVABLE_NAME_RE } from './broadcast-files.js';
import type { BroadcastListEntry, BroadcastManager, BroadcastStatus } from './broadcast-manager.js';
import { NETWORK_ID_RE, type StartBroadcastBody } from './broadcast-schema.js';

export interface BroadcastServiceDeps {
  config: Config;
  logger: Logger;
  coordinator: Coordinator;
  workerId: string;
  manager: BroadcastManager;
  relaySecret: () => Promise<string>;
}

/** A file ready to send: bytes plus the headers of §2.3. */
export interface BroadcastFile {
  data: Buffer;
  contentType: string;
  cacheControl: string;
  lastModified: string;
}

type Op = 'start' | 'stop' | 'status' | 'delete' | 'list';
interface Target {
  workerId: string;
  address: string;
}

const RPC_PATH = '/broadcast-rpc';
const FILE_PATH = '/broadcast-file/';
const RPC_TIMEOUT_MS = 60_000; // a start holds the owner's network lock for ≥ 3 s, a transition up to 5 s more
const LIST_TIMEOUT_MS = 2000;
const ATTEMPTS = 5;
const NOT_OWNER = Symbol('not_owner');
const MAX_RPC_BODY = 4 * 1024 * 1024;

export const leaseKeyOf = (id: string): string => `lease:broadcast:${id}`;
const NO_CACHE = 'no-cache, no-store, must-revalidate';

export const broadcastNotFound = (): AppError => new AppError(404, 'NOT_FOUND', 'Broadcast not found');

export class BroadcastService {
  private readonly keepers = new Map<string, LeaseKeeper>();
  private readonly acquiring = new Map<string, Promise<'local' | Target>>();
  private readonly inflight = new Map<string, number>();
  private readonly idleTimer: NodeJS.Timeout;

  constructor(private readonly deps: BroadcastServiceDeps) {
    // Failed-start counters expire without a request: give their lease back then.
    this.idleTimer = setInterval(() => {
      for (const id of this.keepers.keys()) void this.releaseIfIdle(id);
    }, 5000);
    this.idleTimer.unref();
  }

  /** Whether a network has an owner anywhere (GC spares its directory). */
  async isRegistered(id: string): Promise<boolean> {
    return this.keepers.has(id) || (await this.deps.coordinator.leaseHolder(leaseKeyOf(id))) !== null;
  }

  // ---- the routes ----

  async start(id: string, body: StartBroadcastBody): Promise<BroadcastStatus> {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const where = await this.acquireOrFind(id);
      if (where === 'local') return this.local(id, () => this.deps.manager.start(id, body));
      const answer = await this.forward<BroadcastStatus>(where, 'start', id, body);
      if (answer !== NOT_OWNER) return answer;
    }
    throw new AppError(503, 'UPSTREAM_UNAVAILABLE', `The owner of broadcast ${id} could not be reached; try again`);
  }

  async stop(id: string): Promise<{ final: number }> {
    return this.onOwner(id, 'stop', async () => (await this.deps.manager.stop(id)) ?? Promise.reject(broadcastNotFound()), () => {
      throw broadcastNotFound();
    });
  }

  async status(id: string): Promise<BroadcastStatus> {
    return this.onOwner(id, 'status', async () => (await this.deps.manager.status(id)) ?? Promise.reject(broadcastNotFound()), () => {
      throw broadcastNotFound();
    });
  }

  /** 200 also when nothing existed: then only this host's leftover directory goes. */
  async delete(id: string): Promise<void> {
    await this.onOwner(id, 'delete', () => this.deps.manager.delete(id), () => this.deps.manager.delete(id));
  }

  /** This worker's broadcasts plus every other worker's (2 s each; one that does not answer is left out). */
  async list(): Promise<BroadcastListEntry[]> {
    const own = await this.deps.manager.list();
    const workers = await this.deps.coordinator.listWorkers().catch(() => []);
    const others = await Promise.all(
      workers
        .filter((w) => w.workerId !== this.deps.workerId && w.relay)
        .map((w) => this.forward<BroadcastListEntry[]>({ workerId: w.workerId, address: w.relay! }, 'list', '', null, LIST_TIMEOUT_MS)
          .then((r) => (r === NOT_OWNER ? [] : r))
          .catch(() => [] as BroadcastListEntry[])),
    );
    return [...own, ...others.flat()];
  }

  /** A playlist or segment for players (public): from the owner, else this host's directory. */
  async file(id: string, name: string): Promise<BroadcastFile | null> {
    if (!NETWORK_ID_RE.test(id) || !SERVABLE_NAME_RE.test(name)) return null;
    const where = this.keepers.has(id) ? 'local' : await this.findOwner(id);
    if (where === null || where === 'local') return this.localFile(id, name);
    const fetched = await this.fetchFile(where, id, name);
    // The owner moved or went away meanwhile: what this host has on disk is the best answer.
    return fetched === NOT_OWNER ? this.localFile(id, name) : fetched;
  }

  async close(): Promise<void> {
    clearInterval(this.idleTimer);
    await this.deps.manager.close();
    await Promise.all([...this.keepers.values()].map((k) => k.release()));
    this.keepers.clear();
  }

  // ---- ownership ----

  private async local<T>(id: string, fn: () => Promise<T>): Promise<T> {
    this.inflight.set(id, (this.inflight.get(id) ?? 0) + 1);
    try {
      return await fn();
    } finally {
      const n = (this.inflight.get(id) ?? 1) - 1;
      if (n > 0) this.inflight.set(id, n);
      else this.inflight.delete(id);
      await this.releaseIfIdle(id);
    }
  }

  private async releaseIfIdle(id: string): Promise<void> {
    const keeper = this.keepers.get(id);
    if (!keeper || this.inflight.has(id) || this.deps.manager.holds(id)) return;
    this.keepers.delete(id);
    await keeper.release();
  }

  /** Runs `fn` here when this worker owns the network, else on the owner; `none` when nobody does. */
  private async onOwner<T>(id: string, op: Op, fn: () => Promise<T>, none: () => Promise<T> | T): Promise<T> {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const where = this.keepers.has(id) ? 'local' : await this.findOwner(id);
      if (where === 'local') return this.local(id, fn);
      if (where === null) return none();
      const answer = await this.forward<T>(where, op, id, null);
      if (answer !== NOT_OWNER) return answer;
    }
    throw new AppError(503, 'UPSTREAM_UNAVAILABLE', `The owner of broadcast ${id} could not be reached; try again`);
  }

  private async findOwner(id: string): Promise<'local' | Target | null> {
    const pending = this.acquiring.get(id);
    if (pending) return pending;
    const holder = await this.deps.coordinator.leaseHolder(leaseKeyOf(id));
    if (holder === null) return null;
    const workerId = holderWorkerId(holder);
    if (workerId === this.deps.workerId) return this.keepers.has(id) ? 'local' : null;
    const worker = (await this.deps.coordinator.listWorkers()).find((w) => w.workerId === workerId);
    if (!worker?.relay) throw new AppError(503, 'UPSTREAM_UNAVAILABLE', `The owner of broadcast ${id} is not reachable yet; try again`);
    return { workerId, address: worker.relay };
  }

  /** One acquisition at a time per network on this worker. */
  private acquireOrFind(id: string): Promise<'local' | Target> {
    if (this.keepers.has(id)) return Promise.resolve('local');
    let p = this.acquiring.get(id);
    if (!p) {
      p = (async (): Promise<'local' | Target> => {
        for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
          const owner = await this.findOwnerNoWait(id);
          if (owner !== null) return owner;
          const keeper = new LeaseKeeper({
            coordinator: this.deps.coordinator, key: leaseKeyOf(id), holder: this.deps.workerId,
            ttlMs: this.deps.config.leaseTtlMs, onLost: () => void this.lost(id, keeper),
          });
          if (await keeper.acquire()) {
            this.keepers.set(id, keeper);
            return 'local';
          }
        }
        throw new AppError(503, 'UPSTREAM_UNAVAILABLE', `Broadcast ${id} could not be given an owner; try again`);
      })().finally(() => this.acquiring.delete(id));
      this.acquiring.set(id, p);
    }
    return p;
  }

  private async findOwnerNoWait(id: string): Promise<Target | null> {
    const holder = await this.deps.coordinator.leaseHolder(leaseKeyOf(id));
    if (holder === null) return null;
    const workerId = holderWorkerId(holder);
    if (workerId === this.deps.workerId) return null; // a stale lease of ours: acquire decides
    const worker = (await this.deps.coordinator.listWorkers()).find((w) => w.workerId === workerId);
    return worker?.relay ? { workerId, address: worker.relay } : null;
  }

  private async lost(id: string, keeper: LeaseKeeper): Promise<void> {
    if (this.keepers.get(id) !== keeper) return;
    this.keepers.delete(id);
    await this.deps.manager.abandon(id);
  }

  // ---- the owner side, on the relay listener ----

  /** Handles `/broadcast-rpc` and `/broadcast-file/…` on the relay listener; false for other paths. */
  async handleRelay(req: http.IncomingMessage, res: http.ServerResponse): Promise<boolean> {
    const url = req.url ?? '';
    if (url !== RPC_PATH && !url.startsWith(FILE_PATH)) return false;
    const given = req.headers[RELAY_SECRET_HEADER];
    if (typeof given !== 'string' || !safeEqual(given, await this.deps.relaySecret())) {
      sendJson(res, 403, { detail: 'Relay secret required', code: 'AUTH_INVALID' });
      return true;
    }
    if (url === RPC_PATH && req.method === 'POST') {
      const { op, id, body } = JSON.parse((await readBody(req, MAX_RPC_BODY)).toString('utf8')) as { op: Op; id: string; body: unknown };
      if (op !== 'list' && !this.keepers.has(id)) {
        sendJson(res, 409, { detail: 'Not the owner', code: 'NOT_OWNER' });
        return true;
      }
      try {
        const value = await this.runLocal(op, id, body);
        sendJson(res, 200, { value: value ?? null });
      } catch (err) {
        if (!isAppError(err)) throw err;
        sendJson(res, 200, { error: err.toJSON(), status: err.status });
      }
      return true;
    }
    const m = /^\/broadcast-file\/([A-Za-z0-9_-]{1,64})\/([A-Za-z0-9_.]{1,64})$/.exec(url);
    if (!m || req.method !== 'GET') {
      sendJson(res, 404, { detail: 'Not found', code: 'NOT_FOUND' });
      return true;
    }
    if (!this.keepers.has(m[1]!)) {
      sendJson(res, 409, { detail: 'Not the owner', code: 'NOT_OWNER' });
      return true;
    }
    const file = await this.localFile(m[1]!, m[2]!);
    if (!file) {
      sendJson(res, 404, { detail: 'Segment not found', code: 'NOT_FOUND' });
      return true;
    }
    res.writeHead(200, {
      'Content-Type': file.contentType, 'Cache-Control': file.cacheControl, 'Last-Modified': file.lastModified,
      'Content-Length': file.data.length,
    });
    res.end(file.data);
    return true;
  }

  private runLocal(op: Op, id: string, body: unknown): Promise<unknown> {
    const m = this.deps.manager;
    switch (op) {
      case 'list':
        return m.list();
      case 'start':
        return this.local(id, () => m.start(id, body as StartBroadcastBody));
      case 'stop':
        return this.local(id, async () => (await m.stop(id)) ?? Promise.reject(broadcastNotFound()));
      case 'status':
        return this.local(id, async () => (await m.status(id)) ?? Promise.reject(broadcastNotFound()));
      case 'delete':
        return this.local(id, () => m.delete(id));
    }
  }

  private async localFile(id: string, name: string): Promise<BroadcastFile | null> {
    const found = await this.deps.manager.file(id, name);
    if (!found) return null;
    try {
      const [data, st] = await Promise.all([readFile(found.path), stat(found.path)]);
      return {
        data,
        contentType: contentTypeOf(name),
        cacheControl: name.endsWith('.m3u8') ? NO_CACHE : `max-age=${found.maxAgeS}`,
        lastModified: st.mtime.toUTCString(),
      };
    } catch {
      return null; // deleted between the check and the read (FFmpeg's delete_segments)
    }
  }

  // ---- the asking side ----

  private async forward<T>(target: Target, op: Op, id: string, body: unknown, timeoutMs = RPC_TIMEOUT_MS): Promise<T | typeof NOT_OWNER> {
    let res: Response;
    try {
      res = await fetch(`http://${target.address}${RPC_PATH}`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', [RELAY_SECRET_HEADER]: await this.deps.relaySecret() },
        body: JSON.stringify({ op, id, body }),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch {
      // The owner died: its lease is freed by the primary (or expires); look again.
      await new Promise((r) => setTimeout(r, 200));
      return NOT_OWNER;
    }
    if (res.status === 409) return NOT_OWNER;
    const answer = (await res.json()) as { value?: T; error?: { detail: string; code: string }; status?: number };
    if (answer.error) throw new AppError(answer.status ?? 500, answer.error.code as AppError['code'], answer.error.detail);
    if (!res.ok) throw new AppError(502, 'UPSTREAM_UNAVAILABLE', `The owner of broadcast ${id} answered ${res.status}`);
    return answer.value as T;
  }

  /** The owner's file, through the same owner request as HLS transcodes' files (issue 15). */
  private async fetchFile(target: Target, id: string, name: string): Promise<BroadcastFile | null | typeof NOT_OWNER> {
    const res = await askOwner({
      address: target.address, secret: await this.deps.relaySecret(), from: this.deps.workerId,
      path: `${FILE_PATH}${id}/${name}`, timeoutMs: 10_000,
    });
    if (res === 'not_owner') return NOT_OWNER;
    if (res.statusCode !== 200) {
      res.resume();
      return null;
    }
    const header = (h: string): string | undefined => {
      const v = res.headers[h];
      return typeof v === 'string' ? v : undefined;
    };
    try {
      return {
        data: await readBody(res),
        contentType: header('content-type') ?? contentTypeOf(name),
        cacheControl: header('cache-control') ?? NO_CACHE,
        lastModified: header('last-modified') ?? new Date().toUTCString(),
      };
    } catch {
      return NOT_OWNER; // cut mid-way: the owner went away
    }
  }
}

function sendJson(res: http.ServerResponse, status: number, body: object): void {
  if (res.headersSent) return void res.destroy();
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}
