// Managed HLS output directories: a directory per producer (an FFmpeg writing `-f hls`, or a
// broadcast) under a root the proxy owns, files served by name only, removed when the producer
// stops, and leftovers (a crashed worker's) swept by age. Only the owner of the producer (the
// worker holding its lease) has the directory; every other worker fetches its files from the
// owner over the internal relay listener (DESIGN.md §9), never from the disk.
//
// API for producers (HLS transcodes here; /broadcast/* builds on the same parts):
//
//   const outputs = new ManagedOutputs({ root: config.hlsTempDir, logger, gc: {...} });
//   // owner side
//   const dir = await outputs.create('p1234:1');        // mkdir <root>/m3u-proxy-hls/p1234_1-<rand>
//   spawn(ffmpeg, dir.fill(argv, managedDirPattern(root)));  // the pattern → dir.path
//   await outputs.serve('p1234:1', 'index.m3u8', res, waitMs); // 200 file | 404 JSON | 'not_here'
//   await outputs.release('p1234:1');                   // rm -rf when the producer stops
//   const text = await outputs.read('p1234:1', 'index.m3u8', waitMs);  // Buffer | null | 'not_here'
//   // any other worker (address = the owner's relay listener, secret = the relay secret)
//   const ans = await fileFromOwner({ address, secret, from, key: 'p1234:1', name: 'index.m3u8', timeoutMs });
//   // → http.IncomingMessage (200 file / 404 JSON) | 'not_owner' (resolve again) | 'invalid'
//
// The relay listener answers `GET /files/{key}/{name}` (relay secret required) with
// `outputs.serve`; a worker that does not hold `key` answers 409 so the caller resolves the
// owner again. Names match SAFE_NAME (`[A-Za-z0-9_.-]+`, not `.`/`..`); no path a client names
// is ever opened.
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, readdir, rm, stat } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import type { Logger } from '../../logger.js';
import { askOwner } from './owner-request.js';

/** Subdirectory of the root that holds every managed directory (and nothing else). */
export const MANAGED_SUBDIR = 'm3u-proxy-hls';
/** Stands for the per-producer directory in a rendered argv until the owner creates it. */
export const MANAGED_DIR_TOKEN = '{hls_dir}';
/** File names that may be served: one path component, nothing to climb with. */
export const SAFE_NAME = /^(?!\.{1,2}$)[A-Za-z0-9_.-]{1,128}$/;
/** The relay-listener route other workers use: `/files/{key}/{name}`. */
export const FILES_ROUTE = /^\/files\/([A-Za-z0-9_:.-]{1,256})\/([^/?]+)$/;

const POLL_MS = 100;

/** `<root>/m3u-proxy-hls/{hls_dir}`: what rendered argvs name before a directory exists. */
export function managedDirPattern(root: string): string {
  return path.join(root, MANAGED_SUBDIR, MANAGED_DIR_TOKEN);
}

/** Content type by file extension (playlists, TS, fMP4/CMAF, keys, subtitles). */
export function hlsContentType(name: string): string {
  const ext = path.extname(name).toLowerCase();
  switch (ext) {
    case '.m3u8':
      return 'application/vnd.apple.mpegurl';
    case '.ts':
      return 'video/mp2t';
    case '.m4s':
    case '.mp4':
    case '.cmfv':
      return 'video/mp4';
    case '.m4a':
    case '.cmfa':
      return 'audio/mp4';
    case '.aac':
      return 'audio/aac';
    case '.vtt':
      return 'text/vtt';
    default:
      return 'application/octet-stream';
  }
}

function json(res: http.ServerResponse, status: number, body: object): void {
  if (res.headersSent) return void res.destroy();
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}

/** One producer's directory. */
export class ManagedDir {
  readonly createdAt = Date.now();
  private removed = false;

  constructor(
    readonly key: string,
    /** Absolute path of the directory. */
    readonly path: string,
  ) {}

  /** The argv with `pattern` (managedDirPattern(root)) replaced by this directory. */
  fill(argv: string[], pattern: string): string[] {
    return argv.map((a) => a.split(pattern).join(this.path));
  }

  /** Absolute path of `name` inside the directory, or null for a name that is not SAFE_NAME. */
  file(name: string): string | null {
    return SAFE_NAME.test(name) ? path.join(this.path, name) : null;
  }

  /** Waits until `name` exists (size > 0) or `timeoutMs` passes; false when it never came. */
  async waitFor(name: string, timeoutMs: number, gone: () => boolean = () => false): Promise<boolean> {
    const file = this.file(name);
    if (!file) return false;
    const until = Date.now() + timeoutMs;
    for (;;) {
      const size = await stat(file).then((s) => s.size, () => -1);
      if (size > 0) return true;
      if (this.removed || gone() || Date.now() >= until) return false;
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  }

  get isRemoved(): boolean {
    return this.removed;
  }

  async remove(): Promise<void> {
    this.removed = true;
    await rm(this.path, { recursive: true, force: true });
  }
}

export interface ManagedOutputsOptions {
  /** HLS_TEMP_DIR (or HLS_BROADCAST_DIR): managed directories go under `<root>/m3u-proxy-hls`. */
  root: string;
  logger: Logger;
  /** HLS_GC_*: sweep directories not touched for `ageMs`, every `intervalMs`. */
  gc: { enabled: boolean; intervalMs: number; ageMs: number };
}

/** The managed directories of one worker, by producer key (`{pool_key}:{slot}`). */
export class ManagedOutputs {
  private readonly dirs = new Map<string, ManagedDir>();
  private readonly timer: NodeJS.Timeout | null = null;

  constructor(private readonly opts: ManagedOutputsOptions) {
    if (opts.gc.enabled) {
      this.timer = setInterval(() => void this.sweep(), opts.gc.intervalMs);
      this.timer.unref();
    }
  }

  get base(): string {
    return path.join(this.opts.root, MANAGED_SUBDIR);
  }

  /** Creates a fresh, empty directory for `key` (a previous one of the key is removed first). */
  async create(key: string): Promise<ManagedDir> {
    await this.release(key);
    const name = `${key.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 64)}-${randomBytes(4).toString('hex')}`;
    const dir = new ManagedDir(key, path.join(this.base, name));
    await mkdir(dir.path, { recursive: true, mode: 0o700 });
    this.dirs.set(key, dir);
    return dir;
  }

  get(key: string): ManagedDir | undefined {
    return this.dirs.get(key);
  }

  /** Removes the directory of `key` (the producer stopped); with `only`, just that directory. */
  async release(key: string, only?: ManagedDir): Promise<void> {
    const current = this.dirs.get(key);
    const dir = only ?? current;
    if (!dir || dir.isRemoved) return;
    if (dir === current) this.dirs.delete(key);
    await dir.remove().catch((err: unknown) => this.opts.logger.warn('could not remove an HLS directory', { error: String(err) }));
  }

  /**
   * Answers a request for file `name` of `key` from this worker's directory: 200 with the file
   * (waiting up to `waitMs` for it to appear, for the first playlist), 404 JSON when it does not
   * come or the name is not SAFE_NAME, or 'not_here' (nothing sent) when this worker has no
   * directory for `key`.
   */
  async serve(key: string, name: string, res: http.ServerResponse, waitMs: number): Promise<'served' | 'not_found' | 'not_here'> {
    const dir = this.dirs.get(key);
    if (!dir) return 'not_here';
    const file = dir.file(name);
    if (!file || !(await dir.waitFor(name, waitMs, () => res.destroyed))) {
      json(res, 404, { detail: `HLS file ${SAFE_NAME.test(name) ? name : '(invalid name)'} is not available`, code: 'NOT_FOUND' });
      return 'not_found';
    }
    await sendFile(file, hlsContentType(name), res);
    return 'served';
  }

  /** File `name` of `key` as a Buffer (waiting up to `waitMs`); null when it does not come. */
  async read(key: string, name: string, waitMs: number): Promise<Buffer | null | 'not_here'> {
    const dir = this.dirs.get(key);
    if (!dir) return 'not_here';
    const file = dir.file(name);
    if (!file || !(await dir.waitFor(name, waitMs))) return null;
    return readFile(file).catch(() => null);
  }

  /** Removes managed directories older than the age threshold that no producer here uses. */
  async sweep(): Promise<string[]> {
    const live = new Set([...this.dirs.values()].map((d) => d.path));
    const removed: string[] = [];
    const entries = await readdir(this.base, { withFileTypes: true }).catch(() => []);
    const cutoff = Date.now() - this.opts.gc.ageMs;
    for (const e of entries) {
      const p = path.join(this.base, e.name);
      if (!e.isDirectory() || live.has(p)) continue;
      const mtime = await stat(p).then((s) => s.mtimeMs, () => Infinity);
      if (mtime > cutoff) continue;
      await rm(p, { recursive: true, force: true }).catch(() => undefined);
      removed.push(e.name);
    }
    if (removed.length > 0) this.opts.logger.info('swept leftover HLS directories', { count: removed.length });
    return removed;
  }

  /** Stops the sweep and removes every directory of this worker. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await Promise.all([...this.dirs.keys()].map((k) => this.release(k)));
  }
}

/**
 * Sends a file read at this moment: the length is fixed first, so a segment FFmpeg is still
 * writing is cut at what exists (playlists list only finished segments anyway).
 */
async function sendFile(file: string, type: string, res: http.ServerResponse): Promise<void> {
  const size = await stat(file).then((s) => s.size, () => -1);
  if (size < 0) return json(res, 404, { detail: 'HLS file is gone', code: 'NOT_FOUND' });
  res.writeHead(200, { 'Content-Type': type, 'Content-Length': String(size), 'Cache-Control': 'no-cache' });
  if (size === 0) return void res.end();
  await new Promise<void>((resolve) => {
    const rs = createReadStream(file, { start: 0, end: size - 1 });
    rs.once('error', () => {
      res.destroy();
      resolve();
    });
    rs.once('end', resolve);
    res.once('close', () => {
      rs.destroy();
      resolve();
    });
    rs.pipe(res);
  });
}

export interface OwnerFileRequest {
  /** The owner's relay listener, `host:port`. */
  address: string;
  secret: string;
  from: string;
  key: string;
  name: string;
  timeoutMs: number;
  signal?: AbortSignal;
}

/**
 * Asks the owner worker for file `name` of `key` (GET /files/{key}/{name} on its relay
 * listener): its answer (200 with the file, or 404 JSON), or 'not_owner' (resolve the owner
 * again). An invalid name never leaves this worker.
 */
export async function fileFromOwner(req: OwnerFileRequest): Promise<http.IncomingMessage | 'not_owner' | 'invalid'> {
  if (!SAFE_NAME.test(req.name)) return 'invalid';
  return askOwner({ ...req, path: `/files/${req.key}/${req.name}` });
}
