// Real test media made with ffmpeg from lavfi sources (no network, no fixtures in git).
// Each file is generated once per process and cached, so many specs can share it cheaply.
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

const FFMPEG = 'ffmpeg';
const FFPROBE = 'ffprobe';
// Generous: a loaded CI box can be slow, but a hung ffmpeg must not hang the suite forever.
const TOOL_TIMEOUT_MS = 60_000;

export interface LiveTsOptions {
  /** Length of the file in seconds (the origin loops it). Default 6. */
  seconds?: number;
  /** Total mux rate in kbit/s; the file is padded to this CBR rate. Default 1000. */
  bitrateKbps?: number;
  /** `tone` (a 440 Hz sine, the default), `silent` (digital silence) or `none` (no audio track). */
  audio?: 'tone' | 'silent' | 'none';
  /** false: no video track (an audio-only programme). */
  video?: boolean;
}

const cache = new Map<string, Promise<string>>();
const tempDirs = new Set<string>();
let exitHookInstalled = false;

/** Runs a tool with an argv array (never a shell) and turns a failure into a readable Error. */
async function run(cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync(cmd, args, {
      timeout: TOOL_TIMEOUT_MS,
      maxBuffer: 16 * 1024 * 1024,
    });
    return stdout;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    const detail = e.stderr?.trim() || e.message;
    throw new Error(`${cmd} ${args.join(' ')} failed: ${detail}`);
  }
}

/** Generates one file into a fresh temp dir, caching the promise under `key`. */
function generate(key: string, fileName: string, argsFor: (out: string) => string[]): Promise<string> {
  const cached = cache.get(key);
  if (cached) return cached;
  if (!exitHookInstalled) {
    // Mocha runs with --exit, so 'exit' is the last reliable moment to tidy up.
    process.once('exit', cleanupMedia);
    exitHookInstalled = true;
  }
  const promise = (async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'm3u-proxy-media-'));
    tempDirs.add(dir);
    const out = path.join(dir, fileName);
    try {
      await run(FFMPEG, argsFor(out));
    } catch (err) {
      // Forget the failure so a later call can retry.
      cache.delete(key);
      rmSync(dir, { recursive: true, force: true });
      tempDirs.delete(dir);
      throw err;
    }
    return out;
  })();
  cache.set(key, promise);
  return promise;
}

/**
 * A real H.264 + AAC MPEG-TS file padded to a constant mux rate (so its byte rate is known),
 * with a keyframe every second and PAT/PMT every 0.2 s. Returns its path.
 * Note: ffmpeg writes an SDT packet before the first PAT; every packet starts with 0x47.
 */
export async function makeLiveTs(opts: LiveTsOptions = {}): Promise<string> {
  const seconds = opts.seconds ?? 6;
  const bitrate = opts.bitrateKbps ?? 1000;
  if (!(seconds > 0)) throw new Error(`makeLiveTs: seconds must be > 0, got ${seconds}`);
  if (!(bitrate >= 300)) throw new Error(`makeLiveTs: bitrateKbps must be >= 300, got ${bitrate}`);
  // Leave headroom under the mux rate for audio (64k) and TS/PES overhead, or ffmpeg
  // cannot honour -muxrate and the byte rate stops being constant.
  const videoKbps = Math.floor(bitrate * 0.6);
  const audio = opts.audio ?? 'tone';
  const video = opts.video ?? true;
  const variant = audio === 'tone' && video ? '' : `:${audio}:${video ? 'v' : 'novideo'}`;
  return generate(`live:${seconds}:${bitrate}${variant}`, 'live.ts', (out) => [
    '-hide_banner', '-nostdin', '-loglevel', 'error', '-y',
    ...(video ? ['-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25'] : []),
    ...(audio === 'none' ? [] : ['-f', 'lavfi', '-i', audio === 'silent' ? 'anullsrc=r=48000:cl=mono' : 'sine=frequency=440:sample_rate=48000']),
    '-t', String(seconds),
    ...(video
      ? ['-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p',
        '-g', '25', '-keyint_min', '25', '-sc_threshold', '0',
        '-b:v', `${videoKbps}k`, '-maxrate', `${videoKbps}k`, '-bufsize', `${videoKbps}k`]
      : []),
    ...(audio === 'none' ? [] : ['-c:a', 'aac', '-b:a', '64k']),
    '-pat_period', '0.2', '-muxrate', `${bitrate}k`,
    '-f', 'mpegts', out,
  ]);
}

/** A small (~2 s) H.264 + AAC mp4 with the moov atom up front. Returns its path. */
export async function makeMp4(): Promise<string> {
  return generate('mp4', 'movie.mp4', (out) => [
    '-hide_banner', '-nostdin', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25',
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-t', '2',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-g', '25',
    '-c:a', 'aac', '-b:a', '64k',
    '-movflags', '+faststart',
    '-f', 'mp4', out,
  ]);
}

const byteRates = new Map<string, Promise<number>>();

/** Bytes per second of a media file: its size divided by the duration ffprobe reports. */
export function tsByteRate(file: string): Promise<number> {
  const cached = byteRates.get(file);
  if (cached) return cached;
  const promise = (async () => {
    const [out, info] = await Promise.all([
      run(FFPROBE, ['-v', 'error', '-show_entries', 'format=duration', '-of', 'csv=p=0', file]),
      stat(file),
    ]);
    const duration = Number.parseFloat(out.trim());
    if (!Number.isFinite(duration) || duration <= 0) {
      throw new Error(`ffprobe reported no usable duration for ${file}: ${JSON.stringify(out)}`);
    }
    return info.size / duration;
  })();
  promise.catch(() => byteRates.delete(file));
  byteRates.set(file, promise);
  return promise;
}

/** Removes every temp dir made so far and forgets the cache. Safe to call any number of times. */
export function cleanupMedia(): void {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
  cache.clear();
  byteRates.clear();
}

/**
 * A short (3 s) H.264 + AAC HLS rendition cut into 1 s segments with a keyframe each:
 * `ts` (seg0.ts …) or `fmp4` (init.mp4 + seg0.m4s …). Returns the playlist's path; the
 * segments lie beside it.
 */
export async function makeHlsSegments(kind: 'ts' | 'fmp4'): Promise<string> {
  const ext = kind === 'ts' ? 'ts' : 'm4s';
  return generate(`hls:${kind}`, 'index.m3u8', (out) => [
    '-hide_banner', '-nostdin', '-loglevel', 'error', '-y',
    '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=25',
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-t', '3',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-g', '25', '-keyint_min', '25', '-sc_threshold', '0',
    '-c:a', 'aac', '-b:a', '48k',
    '-f', 'hls', '-hls_time', '1', '-hls_list_size', '0', '-hls_playlist_type', 'vod',
    ...(kind === 'fmp4' ? ['-hls_segment_type', 'fmp4', '-hls_fmp4_init_filename', 'init.mp4'] : []),
    '-hls_segment_filename', path.join(path.dirname(out), `seg%d.${ext}`),
    out,
  ]);
}
