// The files of one broadcast directory (BROADCAST.md §3.3): `live.m3u8`, `live<N>.ts` with N
// zero-padded to 6 digits (7 or more past 999,999), and with subtitles `live_vtt.m3u8` and
// `live<N>.vtt`. Names are the only thing read from a request, so they are matched whole.
import { lstat, readdir, readFile, rm, unlink } from 'node:fs/promises';
import path from 'node:path';

/** Names a client may fetch: segments, subtitle segments and the two playlists (§7.9). */
export const SERVABLE_NAME_RE = /^(live\d{1,18}\.(ts|vtt)|live(_vtt)?\.m3u8)$/;
const SEGMENT_RE = /^live(\d{6,18})\.ts$/;
const SUBTITLE_RE = /^live(\d{1,18})\.vtt$/;
const PLAYLISTS = ['live.m3u8', 'live_vtt.m3u8'];

export const broadcastDirName = (id: string): string => `broadcast_${id}`;

/** Segment number of `live000123.ts` (any number of digits ≥ 6), else null. */
export function segmentNumber(name: string): number | null {
  const m = SEGMENT_RE.exec(name);
  return m ? Number(m[1]) : null;
}

async function names(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch {
    return [];
  }
}

/** Segment numbers on disk, ascending. */
export async function segmentNumbers(dir: string): Promise<number[]> {
  return (await names(dir)).map(segmentNumber).filter((n): n is number => n !== null).sort((a, b) => a - b);
}

/** Highest `live<N>.ts` on disk, or null when there is none. */
export async function highestSegment(dir: string): Promise<number | null> {
  const all = await segmentNumbers(dir);
  return all.length ? all[all.length - 1]! : null;
}

/** The bare file names a playlist lists (its URI lines). */
export function listedNames(playlist: string): Set<string> {
  return new Set(
    playlist.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#')).map((l) => path.basename(l)),
  );
}

async function listedInPlaylists(dir: string): Promise<Set<string>> {
  const listed = new Set<string>();
  for (const p of PLAYLISTS) {
    const text = await readFile(path.join(dir, p), 'utf8').catch(() => '');
    for (const n of listedNames(text)) listed.add(n);
  }
  return listed;
}

/**
 * Deletes `.ts` and `.vtt` files the current playlists do not list and that are older than
 * `minAgeMs` (0 = any age). `.vtt` too: Python never swept them (§7.7). Returns the count.
 */
export async function sweepOrphans(dir: string, minAgeMs: number, now = Date.now()): Promise<number> {
  const listed = await listedInPlaylists(dir);
  let removed = 0;
  for (const name of await names(dir)) {
    if (!SEGMENT_RE.test(name) && !SUBTITLE_RE.test(name)) continue;
    if (listed.has(name)) continue;
    const file = path.join(dir, name);
    try {
      if (minAgeMs > 0 && now - (await lstat(file)).mtimeMs < minAgeMs) continue;
      await unlink(file);
      removed++;
    } catch {
      // Gone meanwhile (FFmpeg's own delete_segments): nothing to do.
    }
  }
  return removed;
}

/** A fresh start's wipe: every segment, subtitle segment and playlist (§2.2 step 3). */
export async function wipeMedia(dir: string): Promise<void> {
  await Promise.all(
    (await names(dir))
      .filter((n) => SEGMENT_RE.test(n) || SUBTITLE_RE.test(n) || n.endsWith('.m3u8'))
      .map((n) => unlink(path.join(dir, n)).catch(() => undefined)),
  );
}

/**
 * The absolute path of `name` inside `dir`, or null when the name is not one a broadcast
 * writes, resolves elsewhere, or is not a regular file (a symlink is refused).
 */
export async function servableFile(dir: string, name: string): Promise<string | null> {
  if (!SERVABLE_NAME_RE.test(name)) return null;
  const file = path.resolve(dir, name);
  if (path.dirname(file) !== path.resolve(dir)) return null;
  try {
    return (await lstat(file)).isFile() ? file : null;
  } catch {
    return null;
  }
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Content-Type by the requested name (§2.3). */
export function contentTypeOf(name: string): string {
  if (name.endsWith('.m3u8')) return 'application/vnd.apple.mpegurl';
  if (name.endsWith('.vtt')) return 'text/vtt';
  return 'video/MP2T';
}
