// The start body of `POST /broadcast/{network_id}/start` (BROADCAST.md §2.1) and the nested
// `next_stream_config` (§5), validated with zod. Lenient like Pydantic v2's lax mode: ints
// accept numeric strings, bools accept "true"/"1"/"yes"; unknown fields are ignored. Stricter
// than Python where the value reaches FFmpeg's argv (§7.12): codecs, presets and hwaccel are
// `[A-Za-z0-9_.:-]`, bitrates digits, resolutions `WxH`.
import { z } from 'zod';
import { headerMap, httpUrl, urlProblem } from '../../http/schemas.js';
import type { ProgrammeSpec } from '../../render/broadcast-argv.js';

const laxInt = (min: number, max: number) =>
  z.preprocess(
    (v) => (typeof v === 'string' && /^\s*[+-]?\d+\s*$/.test(v) ? Number(v) : v),
    z.number({ error: 'must be an integer' }).int('must be an integer').min(min).max(max),
  );

const laxNumber = (min: number, max: number) =>
  z.preprocess(
    (v) => (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : v),
    z.number({ error: 'must be a number' }).min(min).max(max),
  );

const TRUE_WORDS = new Set(['true', '1', 'yes', 'on', 't', 'y']);
const FALSE_WORDS = new Set(['false', '0', 'no', 'off', 'f', 'n']);
const laxBool = z.preprocess((v) => {
  if (typeof v === 'number' && (v === 0 || v === 1)) return v === 1;
  if (typeof v === 'string') {
    const w = v.trim().toLowerCase();
    if (TRUE_WORDS.has(w)) return true;
    if (FALSE_WORDS.has(w)) return false;
  }
  return v;
}, z.boolean({ error: 'must be a boolean' }));

/** An argv value: a word FFmpeg reads as a name (`libx264`, `h264_nvenc`, `p4`, `cuda`). */
const argWord = z
  .string({ error: 'must be a string' })
  .trim()
  .max(64)
  .regex(/^[A-Za-z0-9_.:-]*$/, 'may only contain letters, digits and _ . : -');

const optional = <T extends z.ZodType>(t: T) => t.nullish();

/** Every programme field: the start body and `next_stream_config` share them (§5). */
const programmeFields = {
  stream_url: httpUrl,
  seek_seconds: optional(laxInt(0, 10 ** 9)),
  duration_seconds: optional(laxInt(0, 10 ** 9)),
  segment_duration: optional(laxInt(1, 600)),
  hls_list_size: optional(laxInt(0, 100_000)),
  transcode: optional(laxBool),
  video_bitrate: optional(
    z.preprocess((v) => (typeof v === 'number' ? String(v) : v), z.string().trim().regex(/^\d{0,7}$/, 'must be a number of kbit/s')),
  ),
  audio_bitrate: optional(laxInt(1, 10_000)),
  video_resolution: optional(z.string().trim().regex(/^(\d{1,5}[x:]-?\d{1,5})?$/, 'must be WIDTHxHEIGHT, e.g. 1280x720')),
  deinterlace: optional(laxBool),
  video_codec: optional(argWord),
  audio_codec: optional(argWord),
  preset: optional(argWord),
  hwaccel: optional(argWord),
  callback_url: optional(httpUrl),
  headers: optional(headerMap),
  preferred_audio_language: optional(z.string().trim().max(32).regex(/^[A-Za-z0-9_-]*$/, 'must be a language code or a stream number')),
  subtitles_enabled: optional(laxBool),
  subtitle_url: optional(z.string().trim().max(8192).superRefine((v, ctx) => {
    if (v === '') return;
    const problem = urlProblem(v);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  })),
  subtitle_language: optional(z.string().trim().max(32).regex(/^[A-Za-z0-9_-]*$/, 'must be a language code or a stream number')),
  subtitle_seek_seconds: optional(laxNumber(0, 10 ** 9)),
};

export const nextStreamConfigSchema = z.object(programmeFields, { error: 'must be an object' });

export const startBroadcastSchema = z.object(
  {
    ...programmeFields,
    segment_start_number: optional(laxInt(0, Number.MAX_SAFE_INTEGER)),
    add_discontinuity: optional(laxBool),
    dvr_mode: optional(laxBool),
    metadata: optional(z.record(z.string(), z.unknown())),
    // Parsed on its own (an invalid one only disables the auto-transition, §5).
    next_stream_config: z.unknown().optional(),
    // Read by no proxy version and always null from the editor; never honoured (§7.10).
    output_dir: z.unknown().optional(),
  },
  { error: 'the body must be a JSON object' },
);

export type StartBroadcastBody = z.infer<typeof startBroadcastSchema>;
type ProgrammeBody = z.infer<typeof nextStreamConfigSchema>;

/** A programme and where its events go. */
export interface Programme extends ProgrammeSpec {
  callbackUrl: string | null;
}

/**
 * A programme with the defaults of §2.1 filled in. For a `next_stream_config`, `outer` gives
 * the missing segment_duration, hls_list_size and callback_url (the fork's rule, §5).
 */
export function programmeFrom(
  b: ProgrammeBody,
  outer?: Pick<Programme, 'segmentDuration' | 'hlsListSize' | 'callbackUrl'>,
): Programme {
  const blank = (v: string | null | undefined): string | null => (v === undefined || v === null || v.trim() === '' ? null : v.trim());
  return {
    streamUrl: b.stream_url,
    seekSeconds: b.seek_seconds ?? 0,
    durationSeconds: b.duration_seconds ?? 0,
    segmentDuration: b.segment_duration ?? outer?.segmentDuration ?? 6,
    hlsListSize: b.hls_list_size ?? outer?.hlsListSize ?? 20,
    transcode: b.transcode ?? false,
    videoBitrate: blank(b.video_bitrate),
    audioBitrate: b.audio_bitrate ?? 192,
    videoResolution: blank(b.video_resolution),
    deinterlace: b.deinterlace ?? false,
    videoCodec: blank(b.video_codec),
    audioCodec: blank(b.audio_codec),
    preset: blank(b.preset),
    hwaccel: blank(b.hwaccel),
    callbackUrl: b.callback_url ?? outer?.callbackUrl ?? null,
    headers: b.headers ?? null,
    preferredAudioLanguage: blank(b.preferred_audio_language),
    subtitlesEnabled: b.subtitles_enabled ?? false,
    subtitleUrl: blank(b.subtitle_url),
    subtitleLanguage: blank(b.subtitle_language),
    subtitleSeekSeconds: b.subtitle_seek_seconds ?? 0,
  };
}


/** `network_id` is the editor's UUID; ours allows what can name a directory safely (§7.9). */
export const NETWORK_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
