// The FFmpeg argv of one broadcast run (BROADCAST.md §3.1), built from validated fields and
// the detected hardware variables. Pure: it runs in the render threads like every transcode
// template. No shell ever sees it; every value was validated at the edge (§7.12) and is
// checked again here (inputs are the given URLs, outputs stay inside the run's directory).
import path from 'node:path';
import { AppError } from '../errors.js';
import type { HwVariables } from '../ffmpeg/hw-accel.js';
import { tokenize } from './template.js';

/** One programme as the editor describes it (§2.1), defaults filled in. */
export interface ProgrammeSpec {
  streamUrl: string;
  /** Input offset (s); 0 = none. */
  seekSeconds: number;
  /** Output length (s); 0 = until the input ends. */
  durationSeconds: number;
  segmentDuration: number;
  hlsListSize: number;
  transcode: boolean;
  /** kbit/s as digits, or null. */
  videoBitrate: string | null;
  audioBitrate: number;
  videoResolution: string | null;
  deinterlace: boolean;
  videoCodec: string | null;
  audioCodec: string | null;
  preset: string | null;
  hwaccel: string | null;
  headers: Record<string, string> | null;
  /** ISO 639 code, or digits = the N-th audio stream. */
  preferredAudioLanguage: string | null;
  subtitlesEnabled: boolean;
  subtitleUrl: string | null;
  subtitleLanguage: string | null;
  subtitleSeekSeconds: number;
}

export interface BroadcastArgvInput extends ProgrammeSpec {
  /** First segment number and the playlist's MEDIA-SEQUENCE. */
  startNumber: number;
  discontinuity: boolean;
  dvr: boolean;
  /** Absolute directory of the run (`…/broadcast_<id>`). */
  dir: string;
  /** -itsoffset of the embedded-subtitle second input (s). */
  subtitleSyncOffset: number;
}

export const BROADCAST_PLAYLIST = 'live.m3u8';
export const BROADCAST_SEGMENT_PATTERN = 'live%06d.ts';

const RECONNECT = ['-reconnect', '1', '-reconnect_streamed', '1', '-reconnect_delay_max', '10'];
const DIGITS = /^\d+$/;
const WORD = /^[A-Za-z0-9_.:-]+$/;
const LANGUAGE = /^[A-Za-z0-9_-]+$/;

const invalid = (detail: string): AppError => new AppError(422, 'VALIDATION_ERROR', detail);

/** `-headers "K: V\r\n…"` with CR/LF stripped and empty names dropped (§3.1). */
function headerArgs(headers: Record<string, string> | null): string[] {
  if (!headers) return [];
  const lines = Object.entries(headers)
    .map(([k, v]) => [k.replace(/[\r\n]/g, '').trim(), String(v).replace(/[\r\n]/g, '')] as const)
    .filter(([k]) => k !== '')
    .map(([k, v]) => `${k}: ${v}\r\n`);
  return lines.length ? ['-headers', lines.join('')] : [];
}

function seekArgs(seconds: number): string[] {
  return seconds > 0 ? ['-ss', String(seconds)] : [];
}

/** The encoder family decides whether `-preset` is understood (§7.11). */
function presetArgs(codec: string, preset: string | null, hw: HwVariables, detected: boolean): string[] {
  if (preset !== null) return ['-preset', preset];
  if (detected) return tokenize(hw.PRESET_ARGS);
  return /^libx26[45]$/.test(codec) ? ['-preset', 'veryfast'] : [];
}

function audioMap(pref: string | null): string[] {
  if (pref === null) return ['-map', '0:a:0?'];
  if (DIGITS.test(pref)) return ['-map', `0:a:${Number(pref)}?`];
  // No `?`: ffmpeg fails at option parsing when nothing matches, which the recovery reads.
  return ['-map', `0:a:m:language:${pref}`];
}

function subtitleMap(external: boolean, lang: string | null): string[] {
  if (external) return ['-map', '1:s:0?'];
  if (lang === null) return ['-map', '1:s?'];
  if (DIGITS.test(lang)) return ['-map', `1:s:${Number(lang)}?`];
  return ['-map', `1:s:m:language:${lang}`];
}

export type SubtitleMode = 'none' | 'external' | 'embedded';

export function subtitleMode(b: Pick<ProgrammeSpec, 'subtitlesEnabled' | 'subtitleUrl'>): SubtitleMode {
  if (!b.subtitlesEnabled) return 'none';
  return b.subtitleUrl ? 'external' : 'embedded';
}

/**
 * The argv (without `ffmpeg` and without the proxy's own logging flags) for one run. Throws
 * a 422 AppError for a value that cannot be an FFmpeg word (the schema already refuses them).
 */
export function buildBroadcastArgv(b: BroadcastArgvInput, hw: HwVariables): string[] {
  for (const [name, v] of [['video_codec', b.videoCodec], ['audio_codec', b.audioCodec], ['preset', b.preset], ['hwaccel', b.hwaccel]] as const) {
    if (v !== null && !WORD.test(v)) throw invalid(`${name} may only contain letters, digits and _ . : -`);
  }
  if (b.videoBitrate !== null && !DIGITS.test(b.videoBitrate)) throw invalid('video_bitrate must be a number of kbit/s');
  for (const [name, v] of [['preferred_audio_language', b.preferredAudioLanguage], ['subtitle_language', b.subtitleLanguage]] as const) {
    if (v !== null && !LANGUAGE.test(v)) throw invalid(`${name} must be a language code or a stream number`);
  }
  if (!path.isAbsolute(b.dir)) throw invalid('the broadcast directory must be absolute');

  const subs = subtitleMode(b);
  const wantsHwaccel = b.transcode && b.hwaccel !== null && b.hwaccel.toLowerCase() !== 'none';
  // The detected set ({HW}, encoder, preset, upload) is used whole, or not at all: a request
  // that names its own codec or hwaccel gets exactly what it asked for (Python's behaviour).
  const detected = b.transcode && b.videoCodec === null && b.hwaccel === null;
  const argv: string[] = ['-y'];
  if (wantsHwaccel) argv.push('-hwaccel', b.hwaccel!);
  else if (detected) argv.push(...tokenize(hw.HW));

  // Primary input, paced in real time.
  argv.push(...seekArgs(b.seekSeconds), '-re', ...RECONNECT, ...headerArgs(b.headers), '-i', b.streamUrl);
  if (subs === 'external') {
    // Reconnect and headers too (a Plex token must reach the subtitle as well, §7.13).
    argv.push(...seekArgs(b.subtitleSeekSeconds), ...RECONNECT, ...headerArgs(b.headers), '-i', b.subtitleUrl!);
  } else if (subs === 'embedded') {
    // A second read of the source without -re, so sparse subtitle packets cannot stall pacing.
    argv.push('-itsoffset', String(b.subtitleSyncOffset), ...seekArgs(b.seekSeconds), ...RECONNECT, ...headerArgs(b.headers), '-i', b.streamUrl);
  }
  if (b.durationSeconds > 0) argv.push('-t', String(b.durationSeconds));

  argv.push('-map', '0:v:0?', ...audioMap(b.preferredAudioLanguage));
  if (subs !== 'none') argv.push(...subtitleMap(subs === 'external', b.subtitleLanguage));

  if (!b.transcode) {
    argv.push('-c:v', 'copy', '-c:a', 'copy');
  } else {
    const codec = b.videoCodec ?? (detected ? hw.ENC264 : 'libx264');
    argv.push('-c:v', codec, ...presetArgs(codec, b.preset, hw, detected));
    if (b.videoBitrate) argv.push('-b:v', `${b.videoBitrate}k`);
    const filters = [b.deinterlace ? 'yadif' : null, b.videoResolution ? `scale=${b.videoResolution.replace(':', 'x')}` : null]
      .filter((f): f is string => f !== null);
    const upload = detected ? hw.HWUPLOAD : '';
    if (filters.length > 0 || upload) argv.push('-vf', (filters.join(',') || 'null') + upload);
    argv.push('-c:a', b.audioCodec ?? 'aac', '-b:a', `${b.audioBitrate}k`, '-ar', '48000', '-ac', '2');
  }
  // -c:s is never set: the HLS muxer then writes WebVTT (copying SRT gave broken VTT, §3.1).
  if (subs === 'external' && b.subtitleLanguage !== null) argv.push('-metadata:s:s:0', `language=${b.subtitleLanguage}`);

  const flags = ['program_date_time', 'omit_endlist', 'independent_segments'];
  if (!b.dvr) flags.unshift('delete_segments');
  if (b.discontinuity) flags.push('discont_start');
  argv.push(
    '-f', 'hls',
    '-hls_time', String(b.segmentDuration),
    '-hls_list_size', String(b.dvr ? 0 : b.hlsListSize),
    ...(b.dvr ? ['-hls_playlist_type', 'event'] : []),
    '-start_number', String(b.startNumber),
    '-hls_flags', flags.join('+'),
    '-hls_segment_filename', path.join(b.dir, BROADCAST_SEGMENT_PATTERN),
  );
  if (subs === 'embedded') argv.push('-avoid_negative_ts', 'make_zero');
  argv.push(path.join(b.dir, BROADCAST_PLAYLIST));
  checkBroadcastArgv(argv, b);
  return argv;
}

/** Inputs are only the request's URLs; the only output is the playlist inside the run's directory. */
function checkBroadcastArgv(argv: string[], b: BroadcastArgvInput): void {
  const allowed = new Set([b.streamUrl, ...(b.subtitleUrl ? [b.subtitleUrl] : [])]);
  argv.forEach((t, i) => {
    if (t === '-i' && !allowed.has(argv[i + 1] ?? '')) throw invalid('a broadcast input must be the requested URL');
  });
  const out = argv[argv.length - 1]!;
  if (path.dirname(out) !== path.resolve(b.dir)) throw invalid('the broadcast output must be inside its directory');
}
